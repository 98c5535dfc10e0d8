"""The rules of every watched policy room, indexed for the questions asked on each event (pure).

A join asks "which rules ban this user?", a message with media "which rules take this
mxc down?". Literal entities and MSC4205 hashes are dictionary look-ups; only globs are
tried one by one, each with the bounded linear matcher of rules.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from .rules import MXC, USER, PolicyRule, entity_hash

RuleKey = tuple[str, str, str]


def key_of(rule: PolicyRule) -> RuleKey:
    return (rule.list_room, rule.event_type, rule.state_key)


class RuleIndex:
    """The active rules by key, with look-ups by literal entity, hash and glob."""

    def __init__(self, rules: Iterable[PolicyRule] = ()) -> None:
        self.rules: dict[RuleKey, PolicyRule] = {}
        self._literal: dict[tuple[str, str], set[RuleKey]] = {}
        self._hashed: dict[tuple[str, str], set[RuleKey]] = {}
        self._globs: dict[RuleKey, PolicyRule] = {}
        # How many acting rules of each kind there are: asked on every event received.
        self._acting: dict[str, int] = {}
        self._per_list: dict[str, int] = {}
        for rule in rules:
            self.put(rule)

    def __len__(self) -> int:
        return len(self.rules)

    def put(self, rule: PolicyRule) -> PolicyRule | None:
        """Add or replace the rule at its key; returns the one replaced."""
        old = self.remove(key_of(rule))
        key = key_of(rule)
        self.rules[key] = rule
        self._per_list[rule.list_room] = self._per_list.get(rule.list_room, 0) + 1
        if rule.bans:
            self._acting[rule.kind] = self._acting.get(rule.kind, 0) + 1
        if rule.is_glob:
            self._globs[key] = rule
        elif rule.entity is not None:
            self._literal.setdefault((rule.kind, rule.entity), set()).add(key)
        if rule.sha256 is not None:
            self._hashed.setdefault((rule.kind, rule.sha256), set()).add(key)
        return old

    def remove(self, key: RuleKey) -> PolicyRule | None:
        rule = self.rules.pop(key, None)
        if rule is None:
            return None
        self._per_list[rule.list_room] -= 1
        if rule.bans:
            self._acting[rule.kind] -= 1
        self._globs.pop(key, None)
        for table, value in ((self._literal, rule.entity), (self._hashed, rule.sha256)):
            keys = table.get((rule.kind, value)) if value is not None else None
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del table[(rule.kind, value)]
        return rule

    def of_list(self, list_room: str) -> list[PolicyRule]:
        return [r for k, r in self.rules.items() if k[0] == list_room]

    def matching(self, kind: str, value: str) -> list[PolicyRule]:
        """The rules of `kind` whose entity (literal, glob or hash) names `value`."""
        keys = set(self._literal.get((kind, value), ())) | set(self._hashed.get((kind, entity_hash(value)), ()))
        found = [self.rules[k] for k in sorted(keys)]
        found += [r for r in self._globs.values() if r.kind == kind and r.matches(value)]
        return found

    def bans(self, user_id: str) -> list[PolicyRule]:
        """The active m.ban (or m.takedown) user rules naming `user_id`."""
        return [r for r in self.matching(USER, user_id) if r.bans]

    def takedowns(self, mxc: str) -> list[PolicyRule]:
        """The active media rules (MSC4207) naming `mxc`."""
        return [r for r in self.matching(MXC, mxc) if r.bans]

    def has_user_bans(self) -> bool:
        return self._acting.get(USER, 0) > 0

    def has_takedowns(self) -> bool:
        return self._acting.get(MXC, 0) > 0

    def size_of(self, list_room: str) -> int:
        return self._per_list.get(list_room, 0)

    def counts(self) -> dict[str, int]:
        """Rules per watched room."""
        return {room: n for room, n in self._per_list.items() if n}

"""How often a user who may not run commands is told so.

The bot is exempt from the homeserver's rate limits, so answering every refused attempt
would let anyone make it talk as fast as they can type. A refusal is answered at most
once per user per `commands.refusal_reply_interval` seconds; every attempt is still
audited. Pure: the caller passes the (monotonic) time in.
"""

from __future__ import annotations


class RefusalThrottle:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        # user -> when they were last answered, oldest first (re-inserted on each answer),
        # so expired entries are dropped from the front: memory holds only the users
        # answered within the last interval.
        self._answered: dict[str, float] = {}

    def should_answer(self, user: str, now: float) -> bool:
        """Whether to answer this refusal; if so, it counts as answered at `now`."""
        self._forget_before(now - self.interval)
        last = self._answered.get(user)
        if last is not None and now - last < self.interval:
            return False
        self._answered.pop(user, None)
        self._answered[user] = now
        return True

    def _forget_before(self, cutoff: float) -> None:
        while self._answered:
            user, when = next(iter(self._answered.items()))
            if when > cutoff:
                return
            del self._answered[user]

    def __len__(self) -> int:
        return len(self._answered)

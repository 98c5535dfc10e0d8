"""What the executor reports and how it tells moderators: action results, matched media,
and the management-room notice (who, where, what matched, what was done; never the media)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from ..lists.format import describe_entry
from ..model import Decision, EventContext, Hashes, MatchKind, MediaRef, Outcome, Verdict
from ..policy_actions import planned_text


@dataclass(frozen=True)
class MatchedMedia:
    ref: MediaRef
    verdicts: tuple[Verdict, ...]
    hashes: Hashes | None = None


@dataclass(frozen=True)
class ActionResult:
    kind: str
    target: str
    room_id: str | None
    outcome: Outcome
    detail: str
    # Why it failed or is pending: the homeserver's answer (errcode and error), or none.
    error: str | None = None


def describe_verdict(v: Verdict) -> str:
    where = f"list {v.list_name}" if v.list_name else v.classifier
    if v.kind is MatchKind.EXACT:
        how = f"exact {v.hash_type}" if v.hash_type else "exact"
    else:
        how = f"near, {v.hash_type or 'hash'} distance {v.distance}"
    if v.hash_type == "vpdq" and "query_match_percent" in v.details:  # a whole video (bot/classify/videomatch.py)
        seconds = ", ".join(f"{f['second']:g}" for f in v.details.get("frames", ()))
        how = (f"video {v.matched_hash}: {v.details['query_match_percent']:g}% of the video's frames and "
               f"{v.details['compared_match_percent']:g}% of the entry's matched; frames at {seconds} s")  # fmt: skip
    elif "crop" in v.details:  # a crop guess (bot/classify/cropmatch.py)
        how += f"; a cropped copy: matched when padded back as if {v.details['crop']}"
        if v.details.get("signal") == "reliable bits":  # over the bound, its reliable bits agreeing
            how += f", its most reliable bits apart in {_tiers(v)}"
    elif v.details.get("signal") == "reliable bits":  # a smooth image (bot/classify/reliablematch.py)
        how += f"; smooth image, PDQ quality {v.details.get('pdq_quality')}: most reliable bits apart in {_tiers(v)}"
    elif "second" in v.details or v.details.get("query") == "frame":
        how += f", {'second' if 'second' in v.details else 'frame'} {v.details.get('second', v.details.get('frame'))}"
    if "entry" in v.details:  # a row derived from the listed image (bot/lists/format.py)
        how += f"; the list's entry is {describe_entry(v.details['entry'], v.details.get('entry_image'))}"
    return f"{where}, label {v.label} ({how})"


def _tiers(v: Verdict) -> str:
    return ", ".join(f"{m} of its {n}" for n, m in v.details.get("reliable_mismatches", {}).items())


def compose_notice(
    ctx: EventContext,
    decision: Decision,
    matched: Sequence[MatchedMedia],
    results: Sequence[ActionResult],
) -> tuple[str, str]:
    """The management-room notice: who, where, what matched and what was done. Never the media."""
    what = "known media detected" if decision.verdicts or not decision.failures else "media held: a scan failed"
    if ctx.blocked_before_delivery:
        what = what.replace("detected", "blocked before delivery")
    if decision.exempt_reason:
        what += " (sender exempt)"
    title = f"modbot [DRY RUN]: {what}" if decision.dry_run else f"modbot: {what}"
    lines = [
        f"Room: {ctx.room_id}",
        f"Event: {ctx.event_id}",
        f"Sender: {ctx.sender}",
        f"Rule: {decision.rule}",
        *media_lines([m for m in matched if m.verdicts]),
    ]
    if ctx.blocked_before_delivery:
        lines.append("Blocked before delivery: Synapse rejected the event, nobody in the room received it.")
    if decision.exempt_reason:
        spared = ", ".join(planned_text(a) for a in decision.spared) or "nothing"
        lines.append(
            f"The sender is exempt: {decision.exempt_reason}. Spared: {spared}; the media is dealt with as anyone's."
        )
    if decision.replaced:
        lines.append(
            f"The sender is on another server ({decision.remote_server}): instead of "
            + ", ".join(planned_text(a) for a in decision.replaced) + ", the remote-sender actions apply."
        )
    if decision.failures:
        # Classifier errors are credential-free by contract (see bot.classify.base).
        failed = "; ".join(f"{f.classifier}: {f.error}" for f in decision.failures)
        mode = decision.on_failure.value if decision.on_failure else "fail_open"
        lines.append(f"Scan failed ({mode}): {failed}")
        if decision.holds:
            lines.append("Held until a scan succeeds: the media is quarantined and the event redacted.")
    if results:
        lines.append("Actions: " + "; ".join(describe_result(r) for r in results))
    else:
        lines.append("Actions: none")
    return notice_text(title, lines)


def describe_result(r: ActionResult) -> str:
    """`ban @u:x: failed (HTTP 403 M_FORBIDDEN: ...)`: an outcome with the homeserver's reason."""
    text = f"{r.kind} {r.target}: {r.outcome.value}"
    if r.outcome is Outcome.PENDING:
        return f"{text} ({r.error}; retrying)"
    return f"{text} ({r.error})" if r.error else text


def media_lines(matched: Sequence[MatchedMedia]) -> list[str]:
    """One line per matched media: its mxc (as text, never the media) and what it matched."""
    return [f"Media {m.ref.mxc} ({m.ref.source}): " + "; ".join(describe_verdict(v) for v in m.verdicts) for m in matched]


def notice_text(title: str, lines: Sequence[str]) -> tuple[str, str]:
    """A notice's plain body and its HTML: the title in bold, one line each."""
    body = title + "\n" + "\n".join(lines)
    formatted = f"<b>{html.escape(title)}</b><br>" + "<br>".join(html.escape(line) for line in lines)
    return body, formatted

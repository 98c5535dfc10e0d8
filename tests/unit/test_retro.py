"""Retroactive matching: new list entries against the media history, acted on once.

The store is real (SQLite, migrated) and so is the executor; the homeserver is a fake that
records what the bot asked of it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.act.executor import Executor
from bot.act.homeserver import HomeserverError
from bot.act.notices import MatchedMedia
from bot.classify.hashlist import HashListClassifier
from bot.configdetect import DEFAULT_PDQ_MIN_QUALITY, HashListConfig, HashlistSettings
from bot.lists.loaded import LoadedList, Thresholds
from bot.lists.registry import ListRegistry
from bot.lists.format import HashEntry
from bot.lists.vpdq import VpdqFrame, canonical
from bot.metrics import Metrics
from bot.model import Decision, EventContext, Hashes, MediaRef
from bot.policy import parse_policy
from bot.record.db import create_engine, migrate
from smooth_kit import entry_with, flips, smooth_hashes, tiers_of
from bot.record.store import Store
from bot.retro import RETRO, RetroMatcher, decode_digests, encode_digests

RNG = random.Random(4242)
BOT = "@modbot:example.org"
ROOM = "!room:example.org"
UNPROTECTED = "!gone:example.org"
MOD = "@mod:example.org"


def hexdigits(n: int) -> str:
    return f"{RNG.getrandbits(n * 4):0{n}x}"


def flip(hex_hash: str, bits: int) -> str:
    mask = sum(1 << b for b in RNG.sample(range(len(hex_hash) * 4), bits))
    return f"{int(hex_hash, 16) ^ mask:0{len(hex_hash)}x}"


def random_hashes(**fields: Any) -> Hashes:
    pdq = fields.pop("pdq", hexdigits(64))
    values: dict[str, Any] = dict(
        sha256=hexdigits(64), md5=hexdigits(32), sha1=hexdigits(40), size=100, pdq=pdq,
        pdq_quality=90, phash=hexdigits(16), pdq_queries=(pdq,),
    )
    values.update(fields)
    return Hashes(**values)


class FakeHomeserver:
    bot_user_id = BOT

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def quarantine(self, server: str, media_id: str) -> None:
        self.calls.append(("quarantine", f"mxc://{server}/{media_id}"))

    async def redact(self, room_id: str, event_id: str, reason: str, txn_id: str) -> str:
        self.calls.append(("redact", event_id))
        return "$redaction"

    async def ban(self, room_id: str, user_id: str, reason: str) -> None:
        self.calls.append(("ban", room_id, user_id))

    async def send_notice(self, room_id: str, body: str, html: str, txn_id: str) -> str:
        self.calls.append(("notify", body))
        return "$notice"


@dataclass
class World:
    store: Store
    hs: FakeHomeserver
    powers: dict[str, int] = field(default_factory=dict)
    power_fails: bool = False
    protected: set[str] = field(default_factory=lambda: {ROOM})
    acted: list[tuple[Decision, EventContext, Sequence[MatchedMedia]]] = field(default_factory=list)
    allowed: set[str] = field(default_factory=set)
    posted: int = 0

    def matcher(
        self, pdq_min_quality: int | None = None, classifiers: Sequence[HashListClassifier] | None = None
    ) -> RetroMatcher:
        """A matcher for the live hash-list `classifiers`; by default the one implicit classifier
        (with `pdq_min_quality` its floor, when given)."""
        if classifiers is None and pdq_min_quality is not None:
            classifiers = [HashListClassifier([], pdq_min_quality)]
        executor = Executor(
            self.hs,  # type: ignore[arg-type]
            Store(self.store.engine, audit_source=RETRO),
            Metrics(),
            protected_rooms=lambda: sorted(self.protected),
            management_room=lambda: "!mods:example.org",
        )

        async def act(decision: Decision, ctx: EventContext, matched: Sequence[MatchedMedia]) -> Any:
            self.acted.append((decision, ctx, matched))
            return await executor.carry_out(decision, ctx, matched)

        async def power(room_id: str, user_id: str) -> int:
            if self.power_fails:
                raise HomeserverError("power levels unavailable")
            return self.powers.get(user_id, 0)

        world = self

        class Allow:
            def reason(self, hashes: Hashes) -> str | None:
                return "allowlisted" if hashes.sha256 in world.allowed else None

        return RetroMatcher(
            store=self.store,
            policy=lambda: POLICY,
            power=power,
            act=act,
            is_protected=lambda room: room in self.protected,
            bot_user_id=BOT,
            allowlist=Allow(),
            page_size=3,  # several pages even for a small history
            **({} if classifiers is None else {"classifiers": classifiers}),
        )

    async def post(self, hashes: Hashes | None, *, room: str = ROOM, sender: str = "@user:example.org", scanned_match: tuple[str, str] | None = None) -> tuple[str, str]:
        """An event with one image, scanned before (hashes kept, no match unless told)."""
        self.posted += 1
        event_id, mxc = f"$e{self.posted}", f"mxc://example.org/m{self.posted}"
        event = {"event_id": event_id, "room_id": room, "sender": sender, "type": "m.room.message",
                 "origin_server_ts": 1_700_000_000_000 + self.posted,
                 "content": {"msgtype": "m.image", "url": mxc, "body": "x"}}
        await self.store.store_transaction(f"t{self.posted}", [event], lambda e: True)
        ref = MediaRef(mxc, "example.org", f"m{self.posted}", "content.url", "image/png")
        await self.store.link_event_media(event_id, [ref])
        await self.store.record_media(ref, status="hashed" if hashes else "encrypted", hashes=hashes, mimetype="image/png")
        if scanned_match:
            from bot.model import MatchKind, Verdict

            v = Verdict("hashlist", scanned_match[1], MatchKind.EXACT, list_name=scanned_match[0], hash_type="sha256", distance=0)
            await self.store.record_verdicts(event_id, mxc, "hashlist", [v])
        else:
            await self.store.record_verdicts(event_id, mxc, "hashlist", [])
        await self.store.finish_event(event_id, "done")
        return event_id, mxc


POLICY = parse_policy(
    {
        "exempt": {"power_level": 100},
        "rules": [{"name": "known", "actions": ["quarantine", "redact", "ban", "notify"]}],
    }
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    try:
        yield World(Store(engine), FakeHomeserver())
    finally:
        await engine.dispose()


def listed(*entries: tuple[str, str], label: str = "csam", **kw: Any) -> LoadedList:
    return LoadedList.from_entries("known", [HashEntry(t, h, label) for t, h in entries], label=label, **kw)  # type: ignore[arg-type]


async def test_media_seen_before_its_hash_was_listed_is_acted_on_once(world: World) -> None:
    old = random_hashes()
    exact_event, exact_mxc = await world.post(old)
    near = random_hashes()
    near_event, near_mxc = await world.post(near)
    unrelated_event, _ = await world.post(random_hashes())
    await world.post(None)  # media never hashed (encrypted) is simply not in the history
    matcher = world.matcher()

    first = await matcher.run_list(listed(("md5", hexdigits(32))))  # the list as first seen
    assert (first.new_entries, first.media_matched, first.hits) == (1, 0, ())

    grown = listed(("md5", hexdigits(32)), ("sha256", old.sha256), ("pdq", flip(near.pdq or "", 20)))
    report = await matcher.run_list(grown)

    assert report.new_entries == 3  # the md5 above is another random one: new as well
    assert report.media_matched == 2 and report.media_checked == 4 - 1
    assert {h.event_id for h in report.hits} == {exact_event, near_event}
    assert all(h.outcome == "act" for h in report.hits)
    assert ("quarantine", exact_mxc) in world.hs.calls and ("quarantine", near_mxc) in world.hs.calls
    assert ("redact", exact_event) in world.hs.calls and ("redact", near_event) in world.hs.calls
    assert ("ban", ROOM, "@user:example.org") in world.hs.calls
    assert not any(unrelated_event in str(c) for c in world.hs.calls)

    # Verdicts are recorded; every audit row of the run says it was retroactive.
    verdicts = await world.store.verdicts_for(event_id=near_event)
    assert {(v.kind, v.list_name, v.hash_type) for v in verdicts} >= {("near", "known", "pdq")}
    rows = [a for a in await world.store.audit_log(limit=500) if a.event_id in (exact_event, near_event)]
    assert rows and all("retroactive" in a.message for a in rows)
    assert {a.category for a in rows} >= {"verdict", "decision", "action"}
    (run, *_) = await world.store.retro_runs()
    assert (run.list_name, run.status, run.new_entries, run.media_matched) == ("known", "done", 3, 2)

    # The same list again, or after a restart (a new matcher, the same database): nothing new.
    calls = len(world.hs.calls)
    again = await world.matcher().run_list(grown)
    assert (again.new_entries, again.hits) == (0, ())
    assert len(world.hs.calls) == calls


async def test_a_run_repeated_after_an_interruption_does_nothing_twice(world: World) -> None:
    h = random_hashes()
    event_id, _ = await world.post(h)
    matcher = world.matcher()
    lst = listed(("sha256", h.sha256))
    await matcher.run_list(lst)
    # As if the bot died after acting but before recording the list as seen.
    await world.store.replace_list_digests("known", [])
    calls = list(world.hs.calls)
    report = await world.matcher().run_list(lst)
    assert report.new_entries == 1 and report.hits == ()  # already matched for this list and label
    assert world.hs.calls == calls


async def test_an_event_matched_when_scanned_is_not_acted_on_again(world: World) -> None:
    h = random_hashes()
    await world.post(h, scanned_match=("known", "csam"))
    report = await world.matcher().run_list(listed(("sha256", h.sha256)))
    assert report.media_matched == 1 and report.hits == () and world.hs.calls == []


async def test_a_new_label_on_a_listed_hash_is_new_to_the_policy(world: World) -> None:
    h = random_hashes()
    event_id, _ = await world.post(h, scanned_match=("known", "spam"))
    matcher = world.matcher()
    await matcher.run_list(listed(("sha256", h.sha256), label="spam"))
    report = await matcher.run_list(
        LoadedList.from_entries(
            "known", [HashEntry("sha256", h.sha256, "spam"), HashEntry("sha256", h.sha256, "csam")], label="spam"
        )
    )
    assert [(hit.event_id, [v.label for v in hit.verdicts]) for hit in report.hits] == [(event_id, ["csam"])]


async def test_sha1_md5_and_phash_entries_are_found_too(world: World) -> None:
    by_sha1, by_md5, by_phash = random_hashes(), random_hashes(), random_hashes()
    events = [(await world.post(h))[0] for h in (by_sha1, by_md5, by_phash)]
    report = await world.matcher().run_list(
        listed(("sha1", by_sha1.sha1 or ""), ("md5", by_md5.md5), ("phash", flip(by_phash.phash or "", 5)),
               thresholds=Thresholds(phash=8))
    )
    assert sorted(h.event_id for h in report.hits) == sorted(events)


def test_retroactive_and_live_matching_share_one_default_quality_floor(world: World) -> None:
    [implicit] = world.matcher().classifiers
    assert implicit.pdq_min_quality == HashlistSettings().pdq_min_quality == DEFAULT_PDQ_MIN_QUALITY
    assert HashListClassifier([]).pdq_min_quality == DEFAULT_PDQ_MIN_QUALITY


@pytest.mark.parametrize("floor", [None, 50])  # the default (no floor), and the operator's cliff
async def test_retroactive_matching_agrees_with_live_matching_on_low_quality_hashes(world: World, floor: int | None) -> None:
    # A smooth image (quality 20): under the default its copies match within the low-quality
    # bound (28 bits), not the list's 31; with the floor at 50 it near-matches nothing.
    low = random_hashes(pdq_quality=20)
    close, between = flip(low.pdq or "", 10), flip(low.pdq or "", 30)
    lst = listed(("pdq", close), ("pdq", between))
    live = HashListClassifier([lst], **({} if floor is None else {"pdq_min_quality": floor})).match(low).verdicts
    await world.post(low)

    report = await world.matcher(floor).run_list(lst)

    assert [(v.distance, v.matched_hash) for v in live] == ([] if floor else [(10, close)])
    assert report.media_matched == len(live) == (0 if floor else 1)
    if live:
        stored = await world.store.verdicts_for(event_id=report.hits[0].event_id)
        assert [(v.hash_type, v.distance) for v in stored if v.kind == "near"] == [("pdq", 10)]


async def test_each_list_is_matched_with_the_floor_of_the_classifier_that_owns_it(world: World) -> None:
    # Two hash-list classifiers, each with its own lists and PDQ quality floor, as configured
    # live: a picture of quality 60 is under the first one's floor (80) and over the other's (50).
    picture = random_hashes(pdq_quality=60)
    near = flip(picture.pdq or "", 12)
    strict, lenient = (LoadedList.from_entries(name, [HashEntry("pdq", near, "csam")], label="csam")
                       for name in ("strict", "lenient"))
    live = [HashListClassifier([strict, lenient], floor, names=[lst.name]) for floor, lst in ((80, strict), (50, lenient))]
    live[0].name, live[1].name = "strict-lists", "other-lists"
    event_id, _ = await world.post(picture)
    matcher = world.matcher(classifiers=live)

    assert [[(v.classifier, v.list_name) for v in c.match(picture).verdicts] for c in live] == [
        [], [("other-lists", "lenient")]
    ]
    assert (await matcher.run_list(strict)).media_matched == 0
    report = await matcher.run_list(lenient)
    assert report.media_matched == 1 and [h.event_id for h in report.hits] == [event_id]
    assert [(v.classifier, v.list_name, v.distance) for v in report.hits[0].verdicts] == [("other-lists", "lenient", 12)]
    stored = await world.store.verdicts_for(event_id=event_id)
    assert [(v.classifier, v.list_name) for v in stored if v.kind == "near"] == [("other-lists", "lenient")]


async def test_a_list_is_matched_by_every_classifier_that_owns_it_and_by_none_other(world: World) -> None:
    picture = random_hashes(pdq_quality=90)
    lst = listed(("pdq", flip(picture.pdq or "", 5)))
    everything, only_known, elsewhere = (HashListClassifier([lst], names=names) for names in (None, ["known"], ["other"]))
    everything.name, only_known.name, elsewhere.name = "all-lists", "known-only", "elsewhere"
    await world.post(picture)

    report = await world.matcher(classifiers=[everything, only_known, elsewhere]).run_list(lst)

    assert sorted(v.classifier for v in report.hits[0].verdicts) == ["all-lists", "known-only"]


async def test_exempt_senders_unprotected_rooms_and_allowlisted_media(world: World) -> None:
    mod_media, gone_media, allowed_media = random_hashes(), random_hashes(), random_hashes()
    world.powers[MOD] = 100
    mod_event, mod_mxc = await world.post(mod_media, sender=MOD)
    gone_event, _ = await world.post(gone_media, room=UNPROTECTED)
    await world.post(allowed_media)
    world.allowed.add(allowed_media.sha256)
    report = await world.matcher().run_list(
        listed(("sha256", mod_media.sha256), ("sha256", gone_media.sha256), ("sha256", allowed_media.sha256))
    )
    outcomes = {h.event_id: h.outcome for h in report.hits}
    assert outcomes == {mod_event: "exempt", gone_event: "skipped"}
    # The exempt moderator is not banned; the media is removed and the moderators told.
    assert [ctx.event_id for _, ctx, _ in world.acted] == [mod_event]
    assert [c[0] for c in world.hs.calls] == ["quarantine", "redact", "notify"]
    assert world.hs.calls[0] == ("quarantine", mod_mxc)
    assert "sender exempt" in world.hs.calls[2][1] and "power level 100" in world.hs.calls[2][1]
    assert report.complete


async def test_when_power_levels_cannot_be_read_nothing_is_guessed_and_the_run_repeats(world: World) -> None:
    h = random_hashes()
    event_id, _ = await world.post(h)
    world.power_fails = True
    matcher = world.matcher()
    lst = listed(("sha256", h.sha256))
    report = await matcher.run_list(lst)
    assert not report.complete and world.hs.calls == []
    (run, *_) = await world.store.retro_runs()
    assert run.status == "incomplete"
    world.power_fails = False
    report = await matcher.run_list(lst)
    assert [hit.event_id for hit in report.hits] == [event_id] and report.complete
    assert ("redact", event_id) in world.hs.calls


async def test_a_failing_run_is_reported_and_repeats(world: World) -> None:
    h = random_hashes()
    await world.post(h)
    matcher = world.matcher()

    async def broken(*args: Any) -> Any:
        raise RuntimeError("homeserver on fire")

    matcher._act = broken
    report = await matcher.run_list(listed(("sha256", h.sha256)))
    assert report.error == "RuntimeError: homeserver on fire"
    assert any(a.category == "retro" and a.outcome == "failed" for a in await world.store.audit_log())
    assert await world.store.seen_list_digests("known") is None  # not recorded as seen
    report = await world.matcher().run_list(listed(("sha256", h.sha256)))
    assert len(report.hits) == 1


def test_digests_round_trip_through_text_chunks() -> None:
    import numpy as np

    digests = np.sort(np.random.default_rng(1).integers(0, 2**64 - 1, size=250_001, dtype=np.uint64))
    chunks = encode_digests(digests)
    assert len(chunks) == 3 and sum(n for _, n in chunks) == len(digests)
    assert np.array_equal(decode_digests(c for c, _ in chunks), digests)


async def test_progress_is_reported_page_by_page(world: World) -> None:
    for _ in range(7):
        await world.post(random_hashes())
    seen: list[tuple[int, int]] = []
    matcher = world.matcher()
    matcher.progress = lambda name, done, total: seen.append((done, total))
    await matcher.run_list(listed(("pdq", hexdigits(64))))
    assert seen == [(3, 7), (6, 7), (7, 7)]


async def test_runs_do_not_overlap(world: World) -> None:
    h = random_hashes()
    await world.post(h)
    matcher = world.matcher()
    lst = listed(("sha256", h.sha256))
    reports = await asyncio.gather(matcher.run_list(lst), matcher.run_list(lst))
    assert sorted(len(r.hits) for r in reports) == [0, 1]


async def test_every_stored_frame_of_videos_and_animations_is_matched_retroactively(world: World) -> None:
    frames = tuple((second, hexdigits(64), 90) for second in range(8))
    video = random_hashes(pdq=None, pdq_quality=None, phash=None, pdq_queries=(), frame_pdqs=frames)
    video_event, video_mxc = await world.post(video)
    late_frame = hexdigits(64)
    animation = random_hashes(frame_pdqs=((3, hexdigits(64), 90), (6, late_frame, 90)))
    animation_event, _ = await world.post(animation)
    unrelated = random_hashes(pdq=None, pdq_quality=None, phash=None, pdq_queries=(),
                              frame_pdqs=tuple((s, hexdigits(64), 90) for s in range(8)))  # fmt: skip
    unrelated_event, _ = await world.post(unrelated)
    assert (await world.store.get_media(video_mxc)).hashes.frame_pdqs == frames  # type: ignore[union-attr]

    matcher = world.matcher()
    await matcher.run_list(listed(("md5", hexdigits(32))))  # the list as first seen
    # The video re-encoded: each of its frames within 20 bits, as the vPDQ entry a provider shares.
    entry = canonical([VpdqFrame(flip(h, 20), q, float(s)) for s, h, q in frames])
    report = await matcher.run_list(listed(("md5", hexdigits(32)), ("vpdq", entry), ("pdq", flip(late_frame, 10))))
    assert {h.event_id for h in report.hits} == {video_event, animation_event}
    verdicts = await world.store.verdicts_for(event_id=video_event)
    assert {(v.kind, v.list_name, v.hash_type) for v in verdicts} >= {("near", "known", "vpdq")}
    assert not any(unrelated_event in str(c) for c in world.hs.calls)


def signature_text(rng: random.Random) -> str:
    """A `lowfreq` signature as bot/hashing/smoothsig.py writes it: 36 signed bytes, the
    largest of them +-127."""
    values = [127, *(rng.randint(-126, 126) for _ in range(35))]
    return bytes(v & 0xFF for v in values).hex()


async def test_a_smooth_images_stored_signature_is_matched_by_an_entry_listed_later(world: World) -> None:
    rng = random.Random(1407)
    signature, other = signature_text(rng), signature_text(rng)
    # Smooth images: PDQ quality under 50, where the signature is the second signal.
    smooth_event, smooth_mxc = await world.post(random_hashes(pdq_quality=20, lowfreq=(signature,)))
    unrelated_event, _ = await world.post(random_hashes(pdq_quality=20, lowfreq=(other,)))
    assert (await world.store.get_media(smooth_mxc)).hashes.lowfreq == (signature,)  # type: ignore[union-attr]

    matcher = world.matcher(pdq_min_quality=0)  # the default: no cliff
    await matcher.run_list(listed(("md5", hexdigits(32))))  # the list as first seen
    report = await matcher.run_list(listed(("md5", hexdigits(32)), ("lowfreq", signature)))
    assert {h.event_id for h in report.hits} == {smooth_event}
    verdicts = await world.store.verdicts_for(event_id=smooth_event)
    assert {(v.kind, v.list_name, v.hash_type) for v in verdicts} >= {("near", "known", "lowfreq")}
    assert not any(unrelated_event in str(c) for c in world.hs.calls)
    # Matched once: the same list again has no new entry.
    again = await matcher.run_list(listed(("md5", hexdigits(32)), ("lowfreq", signature)))
    assert again.hits == ()


async def test_a_smooth_images_reliable_bits_are_matched_by_a_pdq_entry_listed_later(world: World) -> None:
    smooth = smooth_hashes(1)
    bits, (_, _, top128) = tiers_of(smooth)
    # Listed later: far from every PDQ query (60 unreliable bits changed), its reliable bits agree.
    entry = entry_with(bits, flips(np.flatnonzero(~top128)[:60]))
    other = smooth_hashes(2)
    smooth_event, smooth_mxc = await world.post(smooth)
    other_event, _ = await world.post(other)
    assert (await world.store.get_media(smooth_mxc)).hashes.pdq_coefficients == smooth.pdq_coefficients  # type: ignore[union-attr]

    matcher = world.matcher(pdq_min_quality=0)
    await matcher.run_list(listed(("md5", hexdigits(32))))
    report = await matcher.run_list(listed(("md5", hexdigits(32)), ("pdq", entry)))
    assert {h.event_id for h in report.hits} == {smooth_event}
    (verdict,) = [v for v in await world.store.verdicts_for(event_id=smooth_event) if v.hash_type == "pdq"]
    assert verdict.distance == 60  # past every PDQ bound: only the reliable bits match it
    assert not any(other_event in str(c) for c in world.hs.calls)


async def test_a_cropped_copys_stored_guesses_are_matched_by_a_pdq_entry_listed_later(world: World) -> None:
    from bot.demo.samples import encode, make_photo
    from bot.hashing import compute_hashes

    original = make_photo(202)
    width, height = original.size
    copy = compute_hashes(encode(original.crop((0, 0, width, height - round(height * 0.05))), "JPEG", quality=85))
    entry = compute_hashes(encode(original, "PNG")).pdq or ""
    cropped_event, cropped_mxc = await world.post(copy)
    other_event, _ = await world.post(random_hashes())
    assert (await world.store.get_media(cropped_mxc)).hashes.pdq_uncropped == copy.pdq_uncropped  # type: ignore[union-attr]

    report = await world.matcher().run_list(listed(("pdq", entry)))

    assert {h.event_id for h in report.hits} == {cropped_event}
    (verdict,) = report.hits[0].verdicts
    assert verdict.details["crop"] == "5% cut from the bottom" and verdict.distance <= 31
    assert not any(other_event in str(c) for c in world.hs.calls)


async def test_a_cropped_copys_stored_tiers_confirm_a_guess_over_its_bound_listed_later(world: World) -> None:
    from crop_kit import cut, jpeg, original_pdq
    from bot.demo.samples import make_photo
    from bot.hashing import compute_hashes

    original = make_photo(34, (800, 600))  # 3.75% off each side: its right guess lands 34 bits away
    copy = compute_hashes(jpeg(cut(original, 0.0375, 0.0375, 0.0375, 0.0375)))
    cropped_event, cropped_mxc = await world.post(copy)
    assert (await world.store.get_media(cropped_mxc)).hashes.pdq_uncropped_tiers == copy.pdq_uncropped_tiers  # type: ignore[union-attr]

    report = await world.matcher().run_list(listed(("pdq", original_pdq(original))))

    assert {h.event_id for h in report.hits} == {cropped_event}
    (verdict,) = report.hits[0].verdicts
    assert verdict.details["signal"] == "reliable bits" and 31 < (verdict.distance or 0) <= 40


# --- lists matched live, or not: what counts as seen ---------------------------------------------


def live(name: str, lists: Sequence[str] | None) -> HashListClassifier:
    """A configured hash-list classifier: its name and `lists` (None: every list)."""
    classifier = HashListClassifier([], names=lists)
    classifier.name = name
    return classifier


async def start(world: World, tmp_path: Path, lists: dict[str, Sequence[str]], classifiers: Sequence[HashListClassifier],
                *, disabled: Sequence[str] = ()) -> list[Any]:
    """What a (re)start of the bot does: load the configured lists (each a file of sha256
    entries), build the matcher for the configured classifiers, run it on the lists not held."""
    configs = []
    for name, sha256s in lists.items():
        path = tmp_path / f"{name}.csv"
        path.write_text("type,hash,label\n" + "".join(f"sha256,{h},csam\n" for h in sha256s), encoding="utf-8")
        configs.append(HashListConfig(name=name, path=path, label="csam", enabled=name not in disabled))
    registry = ListRegistry(configs, tmp_path)
    registry.load()
    snapshot = registry.snapshot
    return await world.matcher(classifiers=classifiers).after_reload(snapshot, [s.name for s in snapshot.states if s.hold is None])


async def test_a_list_imported_while_no_classifier_matches_it_is_matched_against_the_history_once_one_does(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before, meanwhile = random_hashes(), random_hashes()
    before_event, before_mxc = await world.post(before)
    lists = {"known": [before.sha256, meanwhile.sha256], "other": [hexdigits(64)]}

    # Imported while the only classifier matches other lists: nothing matches it, live or here.
    (known, _) = await start(world, tmp_path, lists, [live("other-lists", ["other"])])
    assert (known.list_name, known.covered, known.new_entries, known.hits) == ("known", False, 0, ())
    assert "no enabled hash-list classifier matches it" in known.describe()
    assert "list known: no enabled hash-list classifier matches it" in caplog.text  # a warning at each load
    assert await world.store.seen_list_digests("known") is None  # not recorded as seen
    assert await world.store.seen_list_digests("other") is not None
    meanwhile_event, meanwhile_mxc = await world.post(meanwhile)  # scanned without the list

    # Restarted with a classifier for it: the whole list against the whole history.
    classifiers = [live("other-lists", ["other"]), live("known-lists", ["known"])]
    (known, other) = await start(world, tmp_path, lists, classifiers)
    assert known.covered and known.new_entries == 2 and other.new_entries == 0
    assert {h.event_id: h.outcome for h in known.hits} == {before_event: "act", meanwhile_event: "act"}
    assert {v.classifier for h in known.hits for v in h.verdicts} == {"known-lists"}
    assert {("quarantine", before_mxc), ("quarantine", meanwhile_mxc), ("redact", before_event),
            ("redact", meanwhile_event)} <= set(world.hs.calls)
    assert await world.store.seen_list_digests("known") is not None

    # Once: the next start finds nothing new.
    calls = list(world.hs.calls)
    (known, _) = await start(world, tmp_path, lists, classifiers)
    assert (known.new_entries, known.hits) == (0, ()) and world.hs.calls == calls


@pytest.mark.parametrize("dropped", ["classifier", "disabled", "removed"])
async def test_a_list_no_longer_matched_live_is_matched_in_full_when_it_is_again_and_nothing_twice(
    world: World, tmp_path: Path, dropped: str
) -> None:
    listed_hashes = random_hashes()
    first_event, first_mxc = await world.post(listed_hashes)
    lists = {"known": [listed_hashes.sha256], "other": [hexdigits(64)]}
    covering = [live("every-list", None)]
    (known, _) = await start(world, tmp_path, lists, covering)
    assert [h.event_id for h in known.hits] == [first_event]

    # A start where nothing matches the list: its classifier gone, the list disabled, or
    # dropped from the config.
    if dropped == "classifier":
        await start(world, tmp_path, lists, [live("other-lists", ["other"])])
    elif dropped == "disabled":
        await start(world, tmp_path, lists, covering, disabled=["known"])
    else:
        await start(world, tmp_path, {"other": lists["other"]}, covering)
    assert await world.store.seen_list_digests("known") is None
    (forgotten,) = [a for a in await world.store.audit_log(category="retro") if a.outcome == "forgotten"]
    assert "list known: " in forgotten.message and "whole media history" in forgotten.message
    # Meanwhile the listed image is posted again, and not matched.
    again_event, again_mxc = await world.post(listed_hashes)

    (known, _) = await start(world, tmp_path, lists, covering)
    assert known.new_entries == 1 and known.media_matched == 2  # both copies found...
    assert [h.event_id for h in known.hits] == [again_event]  # ...the first was acted on before
    assert world.hs.calls.count(("quarantine", first_mxc)) == 1
    assert ("quarantine", again_mxc) in world.hs.calls and ("redact", again_event) in world.hs.calls


async def test_a_list_matched_live_all_along_keeps_its_entries_seen(world: World, tmp_path: Path) -> None:
    # The common case, as before: a list some classifier matches is matched once per entry,
    # and a classifier added for other lists changes nothing for it.
    h = random_hashes()
    event_id, _ = await world.post(h)
    lists = {"known": [h.sha256], "other": [hexdigits(64)]}
    (known, _) = await start(world, tmp_path, lists, [live("known-lists", ["known"])])
    assert [hit.event_id for hit in known.hits] == [event_id]
    (known, other) = await start(world, tmp_path, lists, [live("known-lists", ["known"]), live("other-lists", ["other"])])
    assert (known.new_entries, known.hits, other.new_entries) == (0, (), 1)
    assert not [a for a in await world.store.audit_log(category="retro") if a.outcome == "forgotten"]


async def test_with_every_hash_list_classifier_disabled_no_list_is_matched_retroactively_either(
    world: World, tmp_path: Path
) -> None:
    listed = random_hashes()
    await world.post(listed)

    # The bot hands over no classifier when every hash-list classifier is disabled (live
    # matching then matches no list): retro must not fall back to one that matches them all.
    (known,) = await start(world, tmp_path, {"known": [listed.sha256]}, [])

    assert (known.covered, known.new_entries, known.hits) == (False, 0, ())
    assert world.hs.calls == [] and await world.store.seen_list_digests("known") is None

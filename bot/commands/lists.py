"""The `lists` commands: the hash lists (add to and remove from their files, list them) and
the allowlist of false positives."""

from __future__ import annotations

import asyncio

from ..act.notices import describe_verdict
from ..classify.videomatch import is_video
from ..config import HashListConfig
from ..lists.format import HashEntry, append_entries, remove_entries
from ..lists.imagerows import image_entries, own_values
from ..lists.videoindex import video_frames
from ..lists.vpdq import TooManyFrames, canonical, check_entry_frames
from ..model import VIDEO_HASH_TYPE, Hashes, MediaRef
from .context import CommandContext, CommandError, CommandServices, Reply
from .framework import ROOM, Arg, CommandSet


def register_list_commands(commands: CommandSet) -> None:
    c = commands.command

    @c("hash add", "add the replied-to media's hashes (an image's crops too) to a list", Arg("list", "word"),
       Arg("label", "word"), section="lists")
    async def hash_add(ctx: CommandContext, list: str, label: str) -> Reply:  # noqa: A002
        config = list_config(ctx.services, list)
        entries: list[HashEntry] = []
        notes: list[str] = []
        for ref in await ctx.media_or_reply(None):
            hashes = await ctx.hashes_of(ref)
            # As `hashes add-image` lists a file: its crops find copies trimmed about as much.
            crops, why = await _crops(ctx, ref, hashes)
            if why:
                notes.append(f"`{ref.mxc}`: its own hashes only, no crops ({why}).")
            entries += image_entries(hashes, crops, label)
            if is_video(hashes):  # a video's frames as one vPDQ entry, as `hashes add-video` writes
                try:
                    check_entry_frames(len(hashes.frame_pdqs), list, config.max_vpdq_frames)
                except TooManyFrames as e:
                    raise CommandError(f"`{ref.mxc}`: {e}; nothing added") from None
                entries.append(HashEntry(VIDEO_HASH_TYPE, canonical(video_frames(hashes.frame_pdqs)), label))
        # One write once every piece is checked: a refusal leaves the file as it was.
        added = await asyncio.to_thread(append_entries, config.path, entries, max_vpdq_frames=config.max_vpdq_frames)
        await ctx.services.controls.reload_lists()
        return Reply([f"Added {added} hashes to list {list} (label {label}).", *notes])

    @c("hash remove", "remove the replied-to media's (or a hash's) entries, and the rows derived from it, from a list",
       Arg("list", "word"), Arg("hash", "hash", optional=True), section="lists")
    async def hash_remove(ctx: CommandContext, list: str, hash: tuple[str, str] | None) -> Reply:  # noqa: A002
        controls = ctx.services.controls
        config = list_config(ctx.services, list)
        values: set[str] = set()
        images: set[str] = set()  # the rows derived from these images go too (bot/lists/imagerows.py)
        media: list[Hashes] = []
        if hash:
            values.add(hash[1])
            if hash[0] == "sha256":
                images.add(hash[1])
        else:
            for ref in await ctx.media_or_reply(None):
                h = await ctx.hashes_of(ref)
                media.append(h)
                values |= own_values(h)
                images.add(h.sha256)
                if is_video(h):
                    values.add(canonical(video_frames(h.frame_pdqs)))
                # Rows that cannot name their image (a plain `type:hex` list, or written by an
                # older modbot) are found by value, when the media can still be read.
                values |= {crop for crop, _what in (await _crops(ctx, ref, h))[0]}
        removed = await asyncio.to_thread(remove_entries, config.path, values, images=images)
        if removed:
            # The bot wrote this file itself: a shrink it would otherwise hold is the moderator's.
            await controls.accept_list(list, by=ctx.sender)
        await controls.reload_lists()
        if removed or not media:
            return Reply([f"Removed {removed} entries from list {list}."])
        # Not listed itself: what it matches instead, and the two ways out. Removing a listed
        # image is for one listed by mistake; an innocent near match is allowed, not unlisted.
        reply = Reply([f"Removed 0 entries from list {list}: the media is not listed itself."])
        for h in media:
            verdicts, _errors = await ctx.services.media.classify_hashes(h)
            for v in (v for v in verdicts if v.list_name == list):
                image = v.details.get("entry_image")
                target = f"sha256:{image}" if image else f"{v.hash_type}:{v.matched_hash}"
                reply.add(f"It matches {describe_verdict(v)}: `hash remove {list} {target}` removes that "
                          f"{'listed image' if image else 'entry'}; `allow` spares this media instead.")
        if len(reply.lines) == 1:
            reply.add(f"Nothing in list {list} matches it now.")
        return reply

    @c("lists", "the hash lists: names, sizes, labels, enabled", scope=ROOM, section="lists")
    async def lists(ctx: CommandContext) -> Reply:
        labels = {c.name: c.label for c in ctx.services.hash_lists}
        lines = [
            f"{r.name}: {r.entries} entries ({', '.join(f'{k} {v}' for k, v in r.counts.items() if v)}), "
            f"label {labels.get(r.name)}, "
            + ("enabled" if r.enabled else "disabled")
            + (f", {len(r.errors)} bad lines" if r.errors else "")
            for r in ctx.services.controls.list_reports
        ]
        return Reply(lines or ["No hash lists configured."])

    @c("allow", "record a false positive (reply, or a hash): matching skips it", Arg("hash", "hash", from_reply=True),
       Arg("reason", "text", optional=True), section="lists")
    async def allow(ctx: CommandContext, hash: tuple[str, str] | None, reason: str | None) -> Reply:  # noqa: A002
        moderation = ctx.services.moderation
        reason = reason or "false positive"
        added = []
        if hash:
            added.append(await moderation.allow(hash[0], hash[1], reason, ctx.sender))
        else:
            for ref in await ctx.media_or_reply(None):
                hashes = await ctx.hashes_of(ref)
                added.append(await moderation.allow("sha256", hashes.sha256, reason, ctx.sender))
                if hashes.pdq:
                    added.append(await moderation.allow("pdq", hashes.pdq, reason, ctx.sender))
        await ctx.services.controls.refresh_allowlist()
        return Reply([f"Allowlisted #{a.id} {a.hash_type} `{a.hash}`" for a in added])

    @c("allow list", "the allowlist", section="lists")
    async def allow_list(ctx: CommandContext) -> Reply:
        entries = await ctx.services.moderation.allowlist()
        lines = [f"#{a.id} {a.hash_type} `{a.hash}`: {a.reason} ({a.added_by})" for a in entries]
        return Reply(lines or ["The allowlist is empty."])

    @c("allow remove", "remove an allowlist entry by number or hash", Arg("entry", "word"), section="lists")
    async def allow_remove(ctx: CommandContext, entry: str) -> Reply:
        removed = await ctx.services.moderation.remove_allowed(entry.lstrip("#"))
        await ctx.services.controls.refresh_allowlist()
        if not removed:
            raise CommandError(f"no allowlist entry {entry}")
        return Reply([f"Removed {removed} allowlist entr{'y' if removed == 1 else 'ies'}."])


async def _crops(ctx: CommandContext, ref: MediaRef, hashes: Hashes) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """The crops an image's list rows hold beside its own (ImageCrops.crops_of), and why
    there are none when it has some to have; none for a video or media without PDQ."""
    if not hashes.pdq or is_video(hashes) or ctx.services.crops is None:
        return (), None
    return await ctx.services.crops.crops_of(ref, hashes.sha256)


def list_config(services: CommandServices, name: str) -> HashListConfig:
    """The configured list of that name; a CommandError naming the lists there are, if none."""
    for config in services.hash_lists:
        if config.name == name:
            return config
    names = ", ".join(c.name for c in services.hash_lists) or "none"
    raise CommandError(f"no hash list {name!r} (have: {names})")

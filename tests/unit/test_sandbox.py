"""bot.hashing.pool: the hashing sandbox, through real worker processes.

What it promises: the same hashes as compute_hashes; a worker over its memory or CPU
limit, silent past the wall-clock limit, or crashed, is killed and replaced, and the job
answers "not scanned: ..." with the exact hashes; stopping never waits for a busy worker; workers run niced. Every
hostile file of tests/hostile.py finishes within its limits through it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import signal
import socket
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
from hostile import HOSTILE, hostile_bytes, jpeg_with_scans, png
from images import encode, make_photo
from PIL import Image

from bot.config import ProcessingConfig
from bot.hashing import MediaLimits, compute_hashes, named_crop_hashes
from bot.hashing.answers import parse as _parse
from bot.hashing.pool import HashSandbox, SandboxStopped

MB = 1024 * 1024
NORMAL = encode(make_photo(11, (1152, 864)), "JPEG", quality=90)


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[HashSandbox]:
    """The sandbox as the bot builds it from the default `processing:` settings."""
    async with HashSandbox.from_config(ProcessingConfig()) as sb:
        yield sb


def limited(**kwargs: object) -> HashSandbox:
    settings: dict[str, object] = {"workers": 1, "memory_bytes": 256 * MB, "cpu_seconds": 10}
    settings.update(kwargs)
    return HashSandbox(**settings)  # type: ignore[arg-type]


async def test_the_sandbox_gives_what_compute_hashes_gives(sandbox: HashSandbox) -> None:
    png = encode(make_photo(12), "PNG")
    frames = [make_photo(20 + i, (160, 120)) for i in range(4)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    gif = out.getvalue()

    for data in (NORMAL, png, gif, b"not an image"):
        assert await sandbox.hash(data) == compute_hashes(data)
    assert len(compute_hashes(gif).frame_pdqs) == 3  # an animation's frames come through too
    hashes, crops = await sandbox.hash_with_crops(png, (0.95, 0.9))
    assert hashes == compute_hashes(png)
    assert crops == named_crop_hashes(png, (0.95, 0.9))
    assert [what for _, what in crops] == ["crop to 95%, centred", "crop to 90%, centred"]
    assert sandbox.restarts == 0


async def test_a_large_legitimate_jpeg_hashes_under_the_default_limits(sandbox: HashSandbox) -> None:
    # 63 MP, ~35 MB: a camera's photo at the size and pixel count the defaults promise.
    rng = np.random.default_rng(0)
    w, h = 9000, 7000
    base = np.asarray(make_photo(13, (900, 700)).resize((w, h), Image.Resampling.BILINEAR))
    noisy = np.clip(base.astype(np.int16) + rng.integers(-40, 40, (h, w, 1), dtype=np.int16), 0, 255).astype(np.uint8)
    data = encode(Image.fromarray(noisy), "JPEG", quality=95)
    del base, noisy
    assert len(data) > 20 * MB

    hashes = await sandbox.hash(data)

    assert hashes.perceptual_error is None and hashes.pdq is not None
    assert (hashes.width, hashes.height) == (w, h)
    assert hashes == compute_hashes(data)
    assert sandbox.restarts == 0


async def test_every_hostile_file_finishes_within_the_limits_at_full_concurrency(sandbox: HashSandbox) -> None:
    files = [(h, hostile_bytes(h.name)) for h in HOSTILE]

    started = time.monotonic()
    results = await asyncio.gather(*(sandbox.hash(data) for _, data in files))
    elapsed = time.monotonic() - started

    for (hostile, data), hashes in zip(files, results, strict=True):
        assert hashes.sha256 == hashlib.sha256(data).hexdigest(), hostile.name
        if hostile.expected is None:
            assert hashes.perceptual_error is None, hostile.name
        else:
            assert (hashes.perceptual_error or "").startswith(hostile.expected), hostile.name
    assert sandbox.restarts == 0  # the checks before decoding caught what they had to
    assert elapsed < 120  # generous: the machine is shared


async def test_a_1_mp_photo_goes_to_a_worker_in_one_send(sandbox: HashSandbox) -> None:
    # Through the memory shared with the worker (up to 8 MiB); past it, through the socket,
    # whose buffer the kernel grants at least 2 x 208 kB (its default net.core.wmem_max) of.
    assert len(NORMAL) < 400_000
    for worker in sandbox._all:
        assert worker.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= 400_000
    assert await sandbox.hash(NORMAL) == compute_hashes(NORMAL)


async def test_media_larger_than_the_shared_memory_go_through_the_socket() -> None:
    small = encode(make_photo(3, (160, 120)), "JPEG", quality=90)
    async with limited(shared_bytes=64 * 1024) as sb:
        assert len(small) < 64 * 1024 < len(NORMAL)
        for data in (NORMAL, small, NORMAL):
            assert await sb.hash(data) == compute_hashes(data)


async def test_a_worker_over_its_memory_limit_is_replaced_and_the_media_not_scanned() -> None:
    # The decoded-byte check is lifted, so that the worker really tries: 8000 x 8000 x 2 bytes.
    hostile = png(8000, 8000, bit_depth=16)
    async with limited(memory_bytes=64 * MB, limits=MediaLimits(max_decoded_bytes=1 << 40)) as sb:
        first = sb.pids

        hashes = await sb.hash(hostile)

        assert hashes.perceptual_error == (
            "not scanned: resource limit (memory): over 64 MiB beyond the worker's idle size (processing.hash_memory_mb)"
        )
        assert hashes.sha256 == hashlib.sha256(hostile).hexdigest() and hashes.size == len(hostile)
        assert hashes.pdq is None
        assert sb.restarts == 1 and sb.restart_reasons["memory"] == 1
        assert await sb.hash(NORMAL) == compute_hashes(NORMAL)  # the next job has a new worker
        assert sb.pids != first
        # The SHA-256 a caller has already (bot/hashing/repeats.py) is the answer's, not computed again.
        given = "ab" * 32
        again = await sb.hash(hostile, sha256=given)
        assert again.sha256 == given and again.md5 == hashes.md5 and again.perceptual_error == hashes.perceptual_error


async def test_a_worker_over_its_cpu_limit_is_killed_and_replaced() -> None:
    hostile = jpeg_with_scans(2000, (4096, 4096))  # ~20 s of CPU once the scan cap is lifted
    async with limited(cpu_seconds=1, limits=MediaLimits(max_jpeg_scans=1 << 30)) as sb:
        started = time.monotonic()
        hashes = await sb.hash(hostile)

        assert hashes.perceptual_error == (
            "not scanned: resource limit (cpu): over 1 s of CPU for one media (processing.hash_cpu_seconds)"
        )
        assert hashes.sha256 == hashlib.sha256(hostile).hexdigest()
        assert time.monotonic() - started < 15
        assert sb.restarts == 1 and sb.restart_reasons["cpu"] == 1
        assert await sb.hash(NORMAL) == compute_hashes(NORMAL)


async def test_the_cpu_limit_is_per_media_not_per_worker() -> None:
    # Forty images of ~0.05 s each add up to more than the limit; none is over it.
    async with limited(cpu_seconds=1) as sb:
        for _ in range(40):
            assert (await sb.hash(NORMAL)).perceptual_error is None
        assert sb.restarts == 0


async def test_a_crashed_worker_is_replaced_and_the_media_not_scanned() -> None:
    hostile = jpeg_with_scans(2000, (4096, 4096))
    async with limited(limits=MediaLimits(max_jpeg_scans=1 << 30)) as sb:
        [pid] = sb.pids
        job = asyncio.create_task(sb.hash(hostile))
        await asyncio.sleep(0.5)
        os.kill(pid, signal.SIGSEGV)  # what a decoder bug would do

        hashes = await job

        assert hashes.perceptual_error == f"not scanned: hashing worker crashed (exit {-signal.SIGSEGV})"
        assert sb.restarts == 1 and sb.restart_reasons["crash"] == 1
        assert await sb.hash(NORMAL) == compute_hashes(NORMAL)


async def test_a_worker_that_stops_answering_is_replaced_at_the_wall_clock_limit() -> None:
    # The backstop for a worker that neither answers nor uses CPU (no decoder is known to
    # block: media is read from memory): one stopped mid-job stands in for it.
    assert HashSandbox.from_config(ProcessingConfig())._limit_detail("time") == (
        "no answer in 60 s (6 x processing.hash_cpu_seconds, at least 30)"
    )
    hostile = jpeg_with_scans(2000, (4096, 4096))
    async with limited(wall_seconds=1, limits=MediaLimits(max_jpeg_scans=1 << 30)) as sb:
        [pid] = sb.pids
        job = asyncio.create_task(sb.hash(hostile))
        await asyncio.sleep(0.3)
        os.kill(pid, signal.SIGSTOP)

        hashes = await job

        assert hashes.perceptual_error == "not scanned: resource limit (time): no answer in 1 s"
        assert hashes.sha256 == hashlib.sha256(hostile).hexdigest()
        assert sb.restarts == 1 and sb.restart_reasons["time"] == 1
        assert await sb.hash(NORMAL) == compute_hashes(NORMAL)


async def test_stopping_kills_a_busy_worker_at_once() -> None:
    hostile = jpeg_with_scans(2000, (4096, 4096))
    sb = limited(cpu_seconds=60, limits=MediaLimits(max_jpeg_scans=1 << 30))
    await sb.start()
    [pid] = sb.pids
    job = asyncio.create_task(sb.hash(hostile))
    waiting = asyncio.create_task(sb.hash(NORMAL))  # queued behind it
    await asyncio.sleep(0.5)

    started = time.monotonic()
    await sb.stop()

    assert time.monotonic() - started < 5
    for task in (job, waiting):
        with pytest.raises(SandboxStopped):
            await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(SandboxStopped):
        await sb.hash(NORMAL)


async def test_a_cancelled_job_does_not_leave_a_confused_worker() -> None:
    hostile = jpeg_with_scans(2000, (4096, 4096))
    async with limited(limits=MediaLimits(max_jpeg_scans=1 << 30)) as sb:
        job = asyncio.create_task(sb.hash(hostile))
        await asyncio.sleep(0.3)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

        assert await sb.hash(NORMAL) == compute_hashes(NORMAL)  # a fresh worker answers
        assert sb.restart_reasons["cancelled"] == 1


async def test_workers_run_at_the_configured_niceness_and_the_bot_keeps_its_own() -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    async with limited(workers=2, nice=max(12, own)) as sb:
        assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in sb.pids] == [max(12, own)] * 2
    assert os.getpriority(os.PRIO_PROCESS, 0) == own


@pytest.mark.parametrize(
    "answer",
    [
        {"hashes": {"sha256": "x", "md5": "y", "size": 1, "evil": 1}},
        {"hashes": {"sha256": ["not", "a", "string"], "md5": None, "size": 1}},
        {"hashes": {"sha256": "a" * 5000, "md5": None, "size": 1}},
        {"hashes": {"sha256": "x", "md5": None, "size": 1, "pdq_queries": ["short"]}},
        {"hashes": {"sha256": "x", "md5": None, "size": 1}, "crops": [1, 2]},
        {"hashes": {"sha256": "x", "md5": None, "size": 1}, "crops": [["a" * 64, "x" * 65]]},  # a name too long
        {"hashes": {"sha256": "x", "md5": None, "size": 1}, "crops": [["g" * 64, "crop to 95%, top"]]},  # not hex
        {"hashes": {"sha256": "x", "md5": None, "size": 1}, "crops": [["a" * 64]]},  # no name
        {"hashes": {"sha256": "x", "md5": None, "size": 1, "frame_pdqs": [[1, "short", 50]]}},
        {"hashes": {"sha256": "x", "md5": None, "size": 1, "frame_pdqs": [[1, "a" * 64, 101]]}},
        {"hashes": {"sha256": "x", "md5": None, "size": 1, "frame_pdqs": [[1, "a" * 64]]}},
        {"hashes": {"sha256": "x", "md5": None, "size": 1, "frame_pdqs": [[1, "a" * 64, 50]] * 3601}},
        {"hashes": "nope"},
    ],
)
def test_a_workers_answer_is_checked_not_trusted(answer: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        _parse(answer)


async def test_an_urgent_job_takes_the_next_free_worker_before_the_jobs_already_waiting() -> None:
    # One worker, busy; three jobs wait; then an urgent one (the pre-send check) comes.
    slow = encode(make_photo(seed=7, size=(4000, 3000)), "PNG")
    async with limited() as sb:
        done: list[str] = []

        async def job(name: str, data: bytes, urgent: bool = False) -> None:
            await sb.hash(data, urgent=urgent)
            done.append(name)

        busy = asyncio.create_task(job("busy", slow))
        await asyncio.sleep(0.1)
        queued = [asyncio.create_task(job(f"queued{i}", NORMAL)) for i in range(3)]
        await asyncio.sleep(0.05)
        urgent = asyncio.create_task(job("urgent", NORMAL, urgent=True))
        await asyncio.gather(busy, urgent, *queued)
        assert done == ["busy", "urgent", "queued0", "queued1", "queued2"]


async def test_a_cancelled_urgent_wait_loses_no_worker_and_stop_wakes_urgent_waiters() -> None:
    slow = encode(make_photo(seed=8, size=(4000, 3000)), "PNG")
    sb = limited()
    await sb.start()
    busy = asyncio.create_task(sb.hash(slow))
    await asyncio.sleep(0.1)
    given_up = asyncio.create_task(sb.hash(NORMAL, urgent=True))
    await asyncio.sleep(0.05)
    given_up.cancel()
    await busy
    assert await sb.hash(NORMAL, urgent=True) == compute_hashes(NORMAL)  # the worker came back
    busy = asyncio.create_task(sb.hash(slow))
    await asyncio.sleep(0.1)
    waiting = asyncio.create_task(sb.hash(NORMAL, urgent=True))
    await asyncio.sleep(0.05)
    await sb.stop()
    for task in (busy, waiting):
        with pytest.raises(SandboxStopped):
            await task

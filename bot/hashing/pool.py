"""The hashing sandbox: every decode of media bytes runs here, in worker processes with a
memory and a CPU-time limit each (bot/hashing/worker.py).

`await sandbox.hash(data)` gives the same `Hashes` compute_hashes would, or, when the
worker handling it went over a limit or died, the exact hashes (computed here) with
`perceptual_error` "not scanned: resource limit (memory): ...", "... (cpu): ..." (the
limit and its configuration key) or "not scanned: hashing worker crashed ...": the worker is killed and replaced, `restarts` counts it,
and the caller goes on with the event. As many workers as `processing.concurrency`.

Workers are forked from multiprocessing's fork server, never from this process: modbot
runs threads and an event loop, which a fork would copy in whatever state they were.
The fork server is a fresh interpreter that imported the hashing modules once; a worker
costs milliseconds to start (measured in bench/bench_sandbox.py), so replacing one after
a hostile file is cheap. `stop()` kills the workers at once, busy or not: SIGTERM of the
bot never waits for a hash.

Jobs wait for a free worker in arrival order, except `urgent` ones (the pre-send check,
which a sender waits on): a freed worker goes to them first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import signal
import socket
import struct
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, TypeVar

from bot.model import Hashes

from .channel import Channel, SharedBuffer
from .fitting import FitSpec, Fitted
from .limits import MediaLimits
from .answers import parse, parse_fit
from .media import Crop, checked_gains, crop_spec, exact_hashes
from .worker import EXIT_MEMORY, WorkerSettings, serve

if TYPE_CHECKING:
    from bot.config import ProcessingConfig

log = logging.getLogger("modbot.sandbox")
T = TypeVar("T")

_HEADER = struct.Struct(">I")
_SEND_BUFFER = 4 << 20  # asked for; see _spawn
_MAX_ANSWER = 1 << 20  # a worker's answer is a few kB; more is a misbehaving worker
# The fork server imports these once. "__main__" too: otherwise every worker would import
# the program's main script again on start (multiprocessing's rule for spawned children),
# which for the `modbot` script means the CLI's imports; a script that starts a sandbox
# needs the usual `if __name__ == "__main__":` guard.
_PRELOAD = ["__main__", "bot.hashing.worker"]
_READY_SECONDS = 60  # a worker is ready in milliseconds; the fork server's first start takes ~1 s
_RESPAWN_BACKOFF = (0.0, 1.0, 5.0, 30.0)  # after consecutive failures to start a worker
# Media up to this size go to a worker through memory shared with it (bot/hashing/channel.py),
# larger ones through its socket: a 12 MP camera JPEG is 3-6 MB. Each worker's buffer keeps
# the pages the largest media it received touched (at most this much).
SHARED_BYTES = 8 << 20


class SandboxStopped(Exception):
    """The sandbox was stopped while a job waited for it."""


@dataclass(eq=False)  # compared and hashed by identity
class _Worker:
    process: BaseProcess
    sock: socket.socket
    channel: Channel


class HashSandbox:
    """A fixed number of hashing worker processes; see the module docstring."""

    def __init__(
        self,
        *,
        workers: int,
        memory_bytes: int,
        cpu_seconds: float,
        nice: int = 0,
        limits: MediaLimits | None = None,
        wall_seconds: float | None = None,
        shared_bytes: int = SHARED_BYTES,
    ) -> None:
        self.size = workers
        self.settings = WorkerSettings(memory_bytes, cpu_seconds, nice, limits or MediaLimits(), shared_bytes)
        # A backstop for a worker that stops answering without using CPU (it should not
        # happen): generous, since on a loaded machine 10 s of CPU can take much longer.
        self.wall_seconds = wall_seconds if wall_seconds is not None else max(30.0, 6 * cpu_seconds)
        self._wall_source = "" if wall_seconds is not None else " (6 x processing.hash_cpu_seconds, at least 30)"
        self.restarts = 0  # workers replaced after a limit or a crash, for /health
        self.restart_reasons: Counter[str] = Counter()
        self._idle: asyncio.Queue[_Worker | None] = asyncio.Queue()  # None: stopped
        # Urgent jobs waiting for a worker (the pre-send check: a sender waits on it); a freed
        # worker goes to the first of them before any other job waiting.
        self._urgent: deque[asyncio.Future[_Worker | None]] = deque()
        self._all: set[_Worker] = set()
        self._spawning: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._context = multiprocessing.get_context("forkserver")

    @classmethod
    def from_config(cls, processing: ProcessingConfig, *, workers: int | None = None) -> HashSandbox:
        """The sandbox the `processing:` settings describe (`workers` defaults to concurrency)."""
        return cls(
            workers=workers or processing.concurrency,
            memory_bytes=processing.hash_memory_mb * 1024 * 1024,
            cpu_seconds=processing.hash_cpu_seconds,
            nice=processing.hash_nice,
            limits=MediaLimits(
                max_pixels=processing.max_image_pixels,
                max_decoded_bytes=processing.max_decoded_bytes,
                max_jpeg_scans=processing.max_jpeg_scans,
                video_frames=processing.max_video_frames,
                video_pixel_budget=processing.max_video_decoded_pixels,
                crop_guesses=processing.crop_guesses,
            ),
        )

    async def __aenter__(self) -> HashSandbox:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the workers (the first start also starts the fork server, ~1 s)."""
        self._context.set_forkserver_preload(_PRELOAD)
        for worker in await asyncio.gather(*(asyncio.to_thread(self._spawn) for _ in range(self.size))):
            self._adopt(worker)

    async def stop(self) -> None:
        """Kill every worker, busy or idle; jobs waiting or running raise SandboxStopped."""
        self._stopped = True
        for task in self._spawning:
            task.cancel()
        workers, self._all = list(self._all), set()
        for worker in workers:
            _kill(worker)
        self._idle.put_nowait(None)  # wakes the jobs waiting for a worker, one after another
        while self._urgent:
            waiter = self._urgent.popleft()
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.gather(*(asyncio.to_thread(w.process.join, 5) for w in workers))
        for worker in workers:
            worker.channel.close()

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and benchmarks)."""
        return [w.process.pid for w in self._all if w.process.pid is not None]

    async def hash(self, data: bytes, *, urgent: bool = False, sha256: str | None = None) -> Hashes:
        """compute_hashes(data) in a worker, within the sandbox's limits (`sha256`, the bytes'
        if known, not computed again); `urgent` jobs go before the jobs already waiting."""
        hashes, _ = await self._run(data, {"sha256": sha256} if sha256 else {}, urgent=urgent)
        return hashes

    async def hash_with_crops(
        self, data: bytes, crops: Sequence[Crop], *, min_quality: int = 50, gains: Sequence[float] = ()
    ) -> tuple[Hashes, tuple[tuple[str, str], ...]]:
        """The hashes and named_crop_hashes(data, crops, gains=gains) in one job (for add-image)."""
        specs = [list(crop_spec(c)) for c in crops]  # ValueError here, not in the worker
        return await self._run(data, {"crops": specs, "min_quality": min_quality, "gains": checked_gains(gains)})

    async def fit(self, data: bytes, spec: FitSpec) -> Fitted | str:
        """fit_image(data, spec) in a worker (bot/hashing/fitting.py): the re-encoded image,
        or why it could not be made (refused by a limit, undecodable, worker replaced)."""
        return await self._job(
            data, {"fit": {"min_side": spec.min_side, "max_bytes": spec.max_bytes}},
            parse_fit, extra_cap=spec.max_bytes,
        )  # fmt: skip

    # --- jobs ----------------------------------------------------------------------------

    async def _run(self, data: bytes, job: dict[str, Any], *, urgent: bool = False) -> tuple[Hashes, tuple[tuple[str, str], ...]]:
        result = await self._job(data, job, lambda answer, _: parse(answer), urgent=urgent)
        if isinstance(result, str):  # the worker failed: the bytes' own hashes, the SHA-256 once
            return await asyncio.to_thread(exact_hashes, data, result, job.get("sha256")), ()
        return result

    async def _job(
        self, data: bytes, job: dict[str, Any], parse: Callable[[dict[str, Any], bytes], T], *, extra_cap: int = 0,
        urgent: bool = False,
    ) -> T | str:
        """`parse` of the worker's answer (and the bytes that follow it, at most `extra_cap`),
        or, when the worker went over a limit or failed, why (the worker is replaced)."""
        if self._stopped:
            raise SandboxStopped("the hashing sandbox is stopped")
        worker = await self._take(urgent)
        if worker is None or self._stopped:
            self._idle.put_nowait(None)
            raise SandboxStopped("the hashing sandbox is stopped")
        healthy = False
        try:
            async with asyncio.timeout(self.wall_seconds):
                answer, extra = await self._exchange(worker, data, job, extra_cap)
            if answer.get("limit") == "memory":
                reason = await self._retire(worker, "memory")
            else:
                result = parse(answer, extra)
                healthy = True
                return result
        except TimeoutError:
            reason = await self._retire(worker, "time")
        except (OSError, EOFError, ValueError, TypeError, KeyError):
            reason = await self._retire(worker, None)
        finally:
            if healthy:
                self._release(worker)
            elif worker in self._all:  # cancelled mid-job: its state is unknown
                _kill(worker)
                self._replace(worker, "cancelled")
        if self._stopped:
            raise SandboxStopped("the hashing sandbox was stopped during the job")
        return reason

    async def _take(self, urgent: bool) -> _Worker | None:
        if not urgent or not self._idle.empty():
            return await self._idle.get()
        waiter: asyncio.Future[_Worker | None] = asyncio.get_running_loop().create_future()
        self._urgent.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                self._release(waiter.result())  # handed over as the job was cancelled: not lost
            raise

    def _release(self, worker: _Worker) -> None:
        """A free worker: to the first urgent job waiting, else back to the idle queue."""
        while self._urgent:
            waiter = self._urgent.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.put_nowait(worker)

    async def _exchange(
        self, worker: _Worker, data: bytes, job: dict[str, Any], extra_cap: int
    ) -> tuple[dict[str, Any], bytes]:
        channel = worker.channel
        await channel.request(job, data)
        size = _HEADER.unpack(await channel.read(_HEADER.size))[0]
        channel.done()  # the worker has the media: they need not stay in the shared buffer
        if size > _MAX_ANSWER:
            raise ValueError(f"answer of {size} bytes")
        answer = json.loads(await channel.read(size))
        if not isinstance(answer, dict):
            raise ValueError("answer is not an object")
        extra = b""
        if "size" in answer:  # raw bytes follow (a fit job's image), never more than asked for
            count = answer["size"]
            if not isinstance(count, int) or not 0 <= count <= extra_cap:
                raise ValueError(f"answer announces {count!r} bytes")
            extra = await channel.read(count, cap=count)
        return answer, extra

    async def _retire(self, worker: _Worker, limit: str | None) -> str:
        """Kill and replace a worker that failed its job; the reason the job gets."""
        _kill(worker)
        code = await asyncio.to_thread(_exit_code, worker.process)
        if limit is None:
            if code == EXIT_MEMORY:
                limit = "memory"
            elif code == -signal.SIGXCPU:  # RLIMIT_CPU's soft limit (the hard one is not set)
                limit = "cpu"
        reason = (
            f"not scanned: resource limit ({limit}): {self._limit_detail(limit)}"
            if limit
            else f"not scanned: hashing worker crashed (exit {code})"
        )
        self._replace(worker, limit or "crash")
        if not self._stopped:
            log.warning("hashing worker %s replaced: %s", worker.process.pid, reason)
        return reason

    def _limit_detail(self, limit: str) -> str:
        """Which limit, in the terms of the configuration, for the audit row."""
        if limit == "memory":
            return f"over {self.settings.memory_bytes >> 20} MiB beyond the worker's idle size (processing.hash_memory_mb)"
        if limit == "cpu":
            return f"over {self.settings.cpu_seconds:g} s of CPU for one media (processing.hash_cpu_seconds)"
        return f"no answer in {self.wall_seconds:g} s{self._wall_source}"

    # --- workers -------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        """A new worker, started and ready (blocking: run in a thread)."""
        ours, theirs = socket.socketpair()
        shared = SharedBuffer(self.settings.shared_bytes)
        process = self._context.Process(
            target=serve, args=(theirs, self.settings), name="modbot-hash", daemon=True
        )
        try:
            process.start()
            theirs.close()
            socket.send_fds(ours, [b"m"], [shared.fd])  # the worker maps it before its limits
            os.close(shared.fd)
            shared.fd = -1
            ours.settimeout(_READY_SECONDS)
            size = _HEADER.unpack(_recv_blocking(ours, _HEADER.size))[0]
            if size > _MAX_ANSWER or "ready" not in json.loads(_recv_blocking(ours, size)):
                raise OSError("the hashing worker did not start")
        except BaseException:
            if process._popen is not None:  # type: ignore[attr-defined]
                process.kill()
                process.join(5)
            ours.close()
            theirs.close()
            shared.close()
            raise
        ours.setblocking(False)
        # A job's bytes in one send, not a send, a wait for the worker to drain the default
        # ~200 kB buffer and another (half the sandbox's cost per 1 MP job; bench/README.md,
        # issue 16). The kernel caps the request at twice net.core.wmem_max (>= 416 kB).
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        return _Worker(process, ours, Channel(ours, cap=_HEADER.size + _MAX_ANSWER + (1 << 16), shared=shared))

    def _adopt(self, worker: _Worker) -> None:
        if self._stopped:
            _kill(worker)
            worker.channel.close()
            return
        worker.channel.attach(asyncio.get_running_loop())
        self._all.add(worker)
        self._release(worker)

    def _replace(self, worker: _Worker, reason: str) -> None:
        self._all.discard(worker)
        worker.channel.close()
        if self._stopped:
            return
        self.restarts += 1
        self.restart_reasons[reason] += 1

        async def replace() -> None:
            for attempt in range(1_000_000):
                await asyncio.sleep(_RESPAWN_BACKOFF[min(attempt, len(_RESPAWN_BACKOFF) - 1)])
                try:
                    self._adopt(await asyncio.to_thread(self._spawn))
                    return
                except Exception as e:  # e.g. out of memory for a fork: try again, more slowly
                    log.error("could not start a hashing worker (attempt %d): %s", attempt + 1, e)

        task = asyncio.get_running_loop().create_task(replace(), name="hash-worker-spawn")
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)


def _recv_blocking(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the hashing worker closed its socket")
        data += chunk
    return data


def _kill(worker: _Worker) -> None:
    try:
        worker.process.kill()
    except (OSError, ValueError, AttributeError):  # already gone, or closed
        pass


def _exit_code(process: BaseProcess) -> int | None:
    process.join(5)
    return process.exitcode

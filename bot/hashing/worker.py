"""The hashing worker: a process that decodes and hashes media under memory and CPU limits.

Started by bot/hashing/pool.py from multiprocessing's fork server, which imported this
module (and so numpy and Pillow) once: a new worker is a fork of an idle,
single-threaded process, ready in milliseconds. Each worker confines itself before its
first job:

- niceness `nice` (a homeserver on the same machine keeps priority under a flood);
- an address-space limit (RLIMIT_AS) of its idle size plus `memory_bytes`: an allocation
  beyond it fails, the job answers "memory" and the worker exits to be replaced;
- a CPU-time limit (RLIMIT_CPU) moved before each job to the CPU used so far plus
  `cpu_seconds`: beyond it the kernel kills the worker (SIGXCPU), whatever C code runs;
- no core dumps (RLIMIT_CORE 0, not dumpable): a dump would write media bytes to disk.

Protocol on the socket it is given: first a file descriptor, memory shared with the parent
(bot/hashing/channel.py's SharedBuffer, mapped read-only here before the limits are set);
then frames of a 4-byte big-endian length and a JSON header; a request header carries the
job and either the size of the raw media bytes that follow it or, as `shared`, how many of
them the shared memory holds; the answer is one JSON frame (for a `fit` job, followed by the `size` bytes of the
re-encoded image). JSON, not pickle: the parent reads what a worker that
may have been taken over by a hostile file sends, and must not execute it.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import mmap
import os
import resource
import socket
import struct
from dataclasses import asdict, dataclass, fields

from bot.model import Hashes

from .fitting import FitSpec, fit_image
from .limits import MediaLimits
from .media import crops_within, hash_within, warm_up

_HASH_FIELDS = tuple(f.name for f in fields(Hashes))
EXIT_MEMORY = 3  # the job ran out of the memory limit (the answer said so, if it could)
_HEADER = struct.Struct(">I")
_PR_SET_DUMPABLE = 4
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


@dataclass(frozen=True)
class WorkerSettings:
    memory_bytes: int
    cpu_seconds: float
    nice: int
    limits: MediaLimits
    shared_bytes: int  # media up to this size come through shared memory (pool.SHARED_BYTES)


def serve(sock: socket.socket, settings: WorkerSettings) -> None:
    """The worker's main loop: one job at a time until the socket closes."""
    sock.setblocking(True)
    shared = _map_shared(sock, settings.shared_bytes)
    _confine(settings)
    _send_frame(sock, {"ready": os.getpid()})
    while True:
        header = _recv_frame(sock)
        if header is None:
            return
        data = _recv_exact(sock, int(header["size"]))
        if data is None:
            return
        if "shared" in header:
            data = shared[: min(int(header["shared"]), len(shared))]
        _allow_cpu(settings.cpu_seconds)
        if "fit" in header:
            _fit(sock, data, settings.limits, header["fit"])
            continue
        try:
            known = header.get("sha256")  # the parent's, computed to find repeated media
            hashes = hash_within(data, settings.limits, known if isinstance(known, str) and len(known) == 64 else None)
            crops: tuple[tuple[str, str], ...] = ()
            if header.get("crops") and hashes.pdq:
                wanted = [tuple(c) for c in header["crops"]]  # the parent sends crop_spec's four numbers
                crops = crops_within(
                    data, wanted, settings.limits, int(header.get("min_quality", 50)), header.get("gains", ())
                )
            del data
            # Hashes holds strings, integers and tuples of them: a shallow dict serialises as
            # asdict's deep copy would, without copying.
            answer = {"hashes": {name: getattr(hashes, name) for name in _HASH_FIELDS}, "crops": [list(c) for c in crops]}
        except MemoryError:
            del data
            try:
                _send_frame(sock, {"limit": "memory"})
            finally:
                os._exit(EXIT_MEMORY)  # the heap may be in any state: start afresh
        _send_frame(sock, answer)


def _fit(sock: socket.socket, data: bytes, limits: MediaLimits, spec: dict) -> None:  # type: ignore[type-arg]
    """A fit_image job: a JSON frame describing the result, then its bytes (`size` of them)."""
    try:
        fitted = fit_image(data, limits, FitSpec(int(spec["min_side"]), int(spec["max_bytes"])))
    except MemoryError:
        del data
        try:
            _send_frame(sock, {"limit": "memory"})
        finally:
            os._exit(EXIT_MEMORY)
    except Exception as e:  # hostile input can make any decoder raise anything
        _send_frame(sock, {"error": f"{type(e).__name__}: {e}"[:500]})
        return
    meta = {k: v for k, v in asdict(fitted).items() if k != "data"}
    _send_frame(sock, {"fitted": meta, "size": len(fitted.data)})
    sock.sendall(fitted.data)


def _map_shared(sock: socket.socket, size: int) -> mmap.mmap:
    """The parent's shared buffer, read-only; OSError unless sealed against shrinking (as
    the parent seals it: bot/hashing/channel.py)."""
    _, fds, _, _ = socket.recv_fds(sock, 16, 1)
    if len(fds) != 1:
        raise OSError("no shared buffer from the parent")
    try:
        if not fcntl.fcntl(fds[0], fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK or os.fstat(fds[0]).st_size < size:
            raise OSError("the shared buffer is not sealed as announced")
        return mmap.mmap(fds[0], size, prot=mmap.PROT_READ)
    finally:
        os.close(fds[0])


def _confine(settings: WorkerSettings) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        # glibc hands freed memory back to the kernel early in a young process (its mmap
        # and trim thresholds start at 128 kB and only grow as large blocks are freed), so
        # every job faulted its buffers in afresh: ~700 page faults and +30% CPU for a
        # 1 MP JPEG (bench/bench_sandbox.py). Keep a working set, as a long-running
        # process ends up doing anyway.
        libc.mallopt(_M_MMAP_THRESHOLD, 16 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 32 * 1024 * 1024)
    except (OSError, AttributeError):  # not Linux/glibc: RLIMIT_CORE is what there is
        pass
    if settings.nice > 0 and os.getpriority(os.PRIO_PROCESS, 0) < settings.nice:
        os.setpriority(os.PRIO_PROCESS, 0, settings.nice)  # never raise a priority
    warm_up()  # numpy and Pillow touch their lazily allocated state now, not in a job
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + settings.memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def _address_space() -> int:
    """This process's current virtual size (VmSize), in bytes."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def _allow_cpu(seconds: float) -> None:
    """Let the next job use `seconds` of CPU from now (RLIMIT_CPU counts a process's total)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds + 0.999)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _recv_frame(sock: socket.socket) -> dict | None:  # type: ignore[type-arg]
    raw = _recv_exact(sock, _HEADER.size)
    if raw is None:
        return None
    body = _recv_exact(sock, _HEADER.unpack(raw)[0])
    return None if body is None else json.loads(body)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """`size` bytes, allocated once (MSG_WAITALL); None at end of stream."""
    chunks = []
    while size:
        chunk = sock.recv(size, socket.MSG_WAITALL)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _send_frame(sock: socket.socket, message: dict) -> None:  # type: ignore[type-arg]
    body = json.dumps(message).encode()
    sock.sendall(_HEADER.pack(len(body)) + body)

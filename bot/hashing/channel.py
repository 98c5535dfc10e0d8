"""The parent's end of a hashing worker's socket (bot/hashing/pool.py): a request out in one
system call, the answer in with as few as it needs.

asyncio's `sock_recv_into` registers the socket with the event loop for each read and
unregisters it after (epoll_ctl twice), and first tries a read that fails while the worker
is still hashing; with a read for the answer's length and another for its body, that was
six system calls and three futures per job, ~0.1 ms of the parent's CPU per 1 MP photo
(bench/bench_hashing.py, issue 16). A Channel stays registered: when the worker writes, one
read takes what is there, usually the whole answer.

The media bytes go through memory shared with the worker (`SharedBuffer`, a sealed memfd)
when they fit in it: through the socket, a 12 MP photo's 3.4 MB cost ~1 ms of CPU more
between the parent (the kernel allocates and fills buffers for them) and the worker
(reading them out), on a job of ~35 ms; through mapped memory it is one copy on each side.
The worker maps it read-only, and the seals keep it from shrinking the memory under the
parent's mapping (which would crash the parent on its next write); the parent never reads
what is there, and zeroes it once the worker has answered. Larger media go through the
socket.

What the worker sends is not trusted: the channel never holds more than `cap` bytes (the
largest answer the current request allows) and stops reading past it, so a worker writing
without end costs the parent nothing; bytes that arrive while no request is out are kept
and make the next request fail (`ChannelError`), and the worker is replaced.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import mmap
import os
import socket
import struct

_CHUNK = 1 << 16  # a read: a worker's answer is a few kB
HEADER = struct.Struct(">I")  # a frame's length, before its JSON
# Kernel 5.1+: no new writable mapping (the parent's exists already); older kernels refuse it.
_F_SEAL_FUTURE_WRITE = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x10)


class SharedBuffer:
    """`size` bytes of memory the parent writes a job's media into and a worker reads."""

    def __init__(self, size: int) -> None:
        self.fd = os.memfd_create("modbot-hash", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.fd, size)
            self.memory = mmap.mmap(self.fd, size)
            self.used = 0  # bytes of the last media in it
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
            try:
                fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, seals | _F_SEAL_FUTURE_WRITE | fcntl.F_SEAL_SEAL)
            except OSError:  # an older kernel: the seals that protect the parent still hold
                fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, seals | fcntl.F_SEAL_SEAL)
        except BaseException:
            os.close(self.fd)
            raise

    def put(self, data: bytes) -> None:
        """`data` at the start of the buffer, instead of the last media."""
        self.memory[: len(data)] = data
        self.used = len(data)

    def wipe(self) -> None:
        """Zero what the last media left (the worker has read it): media bytes do not stay
        in memory between jobs, waiting for the next to overwrite them."""
        if self.used:
            self.memory[: self.used] = memoryview(_zeros(len(self.memory)))[: self.used]
            self.used = 0

    def close(self) -> None:
        self.memory.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@functools.lru_cache(maxsize=4)
def _zeros(size: int) -> bytes:
    """`size` zero bytes, allocated once (calloc: zero pages, read without being filled)."""
    return bytes(size)


class ChannelError(ValueError):
    """The worker broke the protocol (unasked bytes, too many bytes)."""


class Channel:
    """Reads a worker's socket whenever it is readable, into a bounded buffer."""

    def __init__(self, sock: socket.socket, cap: int, shared: SharedBuffer | None = None) -> None:
        self.sock = sock
        self.shared = shared
        self.cap = cap  # the most bytes buffered, outside a request that allows more
        self._buffer = bytearray()
        self._wanted = 0  # bytes the waiting read needs
        self._allowed = 0  # what the waiting read allows buffered
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._eof = False
        self._overflow = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading (in the event loop's thread)."""
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        """Stop reading and close the socket."""
        self._detach()
        self.sock.close()
        if self.shared is not None:
            self.shared.close()
        self._eof = True
        self._wake()

    async def request(self, job: dict[str, object], data: bytes) -> None:
        """Send `job` (a JSON frame) with `data`: through the shared buffer when it fits
        (`"shared": len(data)`), else after the frame (`"size": len(data)`), in one system
        call when the socket buffer takes them. ChannelError when the worker sent anything
        since the last answer was read."""
        if self._buffer or self._overflow:
            raise ChannelError("the worker sent bytes nobody asked for")
        assert self._loop is not None
        if self.shared is not None and len(data) <= len(self.shared.memory):
            self.shared.put(data)
            job, data = {**job, "shared": len(data), "size": 0}, b""
        else:
            job = {**job, "size": len(data)}
        body = json.dumps(job).encode()
        header = HEADER.pack(len(body)) + body
        try:
            sent = self.sock.sendmsg([header, data])
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent < len(header):
            await self._loop.sock_sendall(self.sock, header[sent:])
            sent = len(header)
        if sent - len(header) < len(data):
            await self._loop.sock_sendall(self.sock, memoryview(data)[sent - len(header) :])  # no copy

    def done(self) -> None:
        """The job is over: wipe the shared buffer."""
        if self.shared is not None:
            self.shared.wipe()

    async def read(self, size: int, cap: int = 0) -> bytes:
        """The next `size` bytes from the worker; EOFError if it closed its end first.
        While this waits, up to max(size, cap, self.cap) bytes may be buffered."""
        while len(self._buffer) < size:
            if self._overflow:
                raise ChannelError(f"the worker sent more than {self._limit()} bytes")
            if self._eof:
                raise EOFError("the hashing worker closed its socket")
            assert self._loop is not None
            self._wanted, self._allowed = size, max(size, cap)
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter, self._wanted, self._allowed = None, 0, 0
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def _limit(self) -> int:
        return max(self.cap, self._allowed)

    def _readable(self) -> None:
        limit = self._limit()
        # One byte past the limit is read, to tell a worker that is over it.
        size = min(max(_CHUNK, self._wanted - len(self._buffer)), limit + 1 - len(self._buffer))
        try:
            chunk = self.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._eof = True
            self._detach()
        else:
            self._buffer += chunk
            if len(self._buffer) > limit:
                self._overflow = True  # reading stops: a worker writing without end is not read so
                self._detach()
        if self._eof or self._overflow or len(self._buffer) >= self._wanted:
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _detach(self) -> None:
        if self._loop is not None and self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())

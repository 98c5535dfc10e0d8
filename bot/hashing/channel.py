"""The parent's end of a hashing worker's socket (bot/hashing/pool.py): a request out in one
system call, the answer in with as few as it needs.

asyncio's `sock_recv_into` registers the socket with the event loop for each read and
unregisters it after (epoll_ctl twice), and first tries a read that fails while the worker
is still hashing; with a read for the answer's length and another for its body, that was
six system calls and three futures per job, ~0.1 ms of the parent's CPU per 1 MP photo
(bench/bench_hashing.py, issue 16). A Channel stays registered: when the worker writes, one
read takes what is there, usually the whole answer.

What the worker sends is not trusted: the channel never holds more than `cap` bytes (the
largest answer the current request allows) and stops reading past it, so a worker writing
without end costs the parent nothing; bytes that arrive while no request is out are kept
and make the next request fail (`ChannelError`), and the worker is replaced.
"""

from __future__ import annotations

import asyncio
import socket

_CHUNK = 1 << 16  # a read: a worker's answer is a few kB


class ChannelError(ValueError):
    """The worker broke the protocol (unasked bytes, too many bytes)."""


class Channel:
    """Reads a worker's socket whenever it is readable, into a bounded buffer."""

    def __init__(self, sock: socket.socket, cap: int) -> None:
        self.sock = sock
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
        self._eof = True
        self._wake()

    async def request(self, header: bytes, data: bytes) -> None:
        """Send `header` then `data`, in one system call when the socket buffer takes them
        (bytes left over are sent as the socket drains). ChannelError when the worker sent
        anything since the last answer was read."""
        if self._buffer or self._overflow:
            raise ChannelError("the worker sent bytes nobody asked for")
        assert self._loop is not None
        try:
            sent = self.sock.sendmsg([header, data])
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent < len(header):
            await self._loop.sock_sendall(self.sock, header[sent:])
            sent = len(header)
        if sent - len(header) < len(data):
            await self._loop.sock_sendall(self.sock, memoryview(data)[sent - len(header) :])  # no copy

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

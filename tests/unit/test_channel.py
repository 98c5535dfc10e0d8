"""bot.hashing.channel: the parent's end of a hashing worker's socket.

What it promises: a request arrives whole, however large, its media through the shared
buffer when they fit in it, which the worker can neither shrink nor grow nor write; an
answer is read whatever pieces it comes in; what a worker sends is never buffered beyond the bound the request
allows (a worker writing without end is not read without end), bytes nobody asked for fail
the next request, and a worker that closes its end is an EOFError. The test plays the
worker on the other end of a socket pair.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import mmap
import os
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.hashing.channel import HEADER, Channel, ChannelError, SharedBuffer

CAP = 1000


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[tuple[Channel, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    channel = Channel(ours, cap=CAP)
    channel.attach(asyncio.get_running_loop())
    yield channel, theirs
    channel.close()
    theirs.close()


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


def _receive_job(sock: socket.socket) -> tuple[dict[str, object], bytes]:
    """What a worker reads of a request: the JSON frame and the bytes it announces."""
    job = json.loads(_receive(sock, HEADER.unpack(_receive(sock, HEADER.size))[0]))
    return job, _receive(sock, job["size"])


async def test_a_request_larger_than_the_socket_buffer_arrives_whole(pair: tuple[Channel, socket.socket]) -> None:
    channel, worker = pair
    data = bytes(range(256)) * 40_000  # 10 MB: more than the kernel buffers
    received = asyncio.create_task(asyncio.to_thread(_receive_job, worker))
    await channel.request({"job": 1}, data)
    assert await received == ({"job": 1, "size": len(data)}, data)


async def test_media_that_fit_go_through_the_shared_buffer() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    shared = SharedBuffer(1 << 20)
    worker_view = mmap.mmap(shared.fd, 1 << 20, prot=mmap.PROT_READ)  # as the worker maps it
    channel = Channel(ours, cap=CAP, shared=shared)
    channel.attach(asyncio.get_running_loop())
    try:
        for data in (b"first media" * 1000, b"second"):
            received = asyncio.create_task(asyncio.to_thread(_receive_job, theirs))
            await channel.request({"job": 1}, data)
            assert await received == ({"job": 1, "shared": len(data), "size": 0}, b"")
            assert worker_view[: len(data)] == data
            channel.done()  # answered: the media do not stay in the shared memory
            assert worker_view[: len(data)] == bytes(len(data))
        large = b"x" * ((1 << 20) + 1)  # one byte more than the buffer: through the socket
        received = asyncio.create_task(asyncio.to_thread(_receive_job, theirs))
        await channel.request({}, large)
        assert await received == ({"size": len(large)}, large)
    finally:
        worker_view.close()
        channel.close()
        theirs.close()


def test_the_worker_cannot_resize_or_write_the_shared_buffer() -> None:
    # Shrunk under the parent's mapping, the memory would crash the parent on its next write.
    shared = SharedBuffer(1 << 16)
    try:
        for size in (0, 1 << 10, 1 << 20):
            with pytest.raises(PermissionError):
                os.ftruncate(shared.fd, size)
        assert fcntl.fcntl(shared.fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SEAL  # seals are final
        with pytest.raises(PermissionError):
            mmap.mmap(shared.fd, 1 << 16)  # writable: refused (kernel 5.1+)
        shared.memory[:5] = b"media"  # the parent's own mapping still writes
    finally:
        shared.close()


async def test_an_answer_is_read_whatever_pieces_it_comes_in(pair: tuple[Channel, socket.socket]) -> None:
    channel, worker = pair
    reading = asyncio.create_task(channel.read(600))
    for piece in (b"a" * 10, b"b" * 290, b"c" * 300):
        worker.sendall(piece)
        await asyncio.sleep(0.01)
    assert await reading == b"a" * 10 + b"b" * 290 + b"c" * 300
    worker.sendall(b"1234xyz")  # what follows a read is kept for the next one
    assert await channel.read(4) == b"1234"
    assert await channel.read(3) == b"xyz"


async def test_a_worker_writing_without_end_is_cut_off_at_the_bound(pair: tuple[Channel, socket.socket]) -> None:
    channel, worker = pair
    worker.setblocking(False)
    flood = asyncio.create_task(_flood(worker))
    assert await channel.read(10) == b"z" * 10
    await asyncio.sleep(0.1)
    assert len(channel._buffer) == CAP + 1 - 10  # one byte past the bound, then no more reads
    with pytest.raises(ChannelError):
        await channel.read(CAP)
    with pytest.raises(ChannelError):
        await channel.request({}, b"data")
    flood.cancel()


async def test_a_read_may_allow_more_than_the_bound(pair: tuple[Channel, socket.socket]) -> None:
    channel, worker = pair
    worker.sendall(b"x" * (5 * CAP))
    assert await channel.read(5 * CAP, cap=5 * CAP) == b"x" * (5 * CAP)


async def test_bytes_nobody_asked_for_fail_the_next_request(pair: tuple[Channel, socket.socket]) -> None:
    channel, worker = pair
    worker.sendall(b"a forged answer")
    await asyncio.sleep(0.05)
    with pytest.raises(ChannelError):
        await channel.request({}, b"data")


async def test_a_worker_that_closes_its_end_is_an_eof(pair: tuple[Channel, socket.socket]) -> None:
    channel, worker = pair
    worker.sendall(b"ab")
    worker.shutdown(socket.SHUT_WR)
    with pytest.raises(EOFError):
        await channel.read(3)


async def _flood(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.sock_sendall(sock, b"z" * 65536)
        except OSError:
            return

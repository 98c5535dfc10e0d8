"""bot.hashing.channel: the parent's end of a hashing worker's socket.

What it promises: a request arrives whole, however large; an answer is read whatever
pieces it comes in; what a worker sends is never buffered beyond the bound the request
allows (a worker writing without end is not read without end), bytes nobody asked for fail
the next request, and a worker that closes its end is an EOFError. The test plays the
worker on the other end of a socket pair.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.hashing.channel import Channel, ChannelError

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


async def test_a_request_larger_than_the_socket_buffer_arrives_whole(pair: tuple[Channel, socket.socket]) -> None:
    channel, worker = pair
    data = bytes(range(256)) * 40_000  # 10 MB: more than the kernel buffers
    received = asyncio.create_task(asyncio.to_thread(_receive, worker, 5 + len(data)))
    await channel.request(b"head:", data)
    assert await received == b"head:" + data


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
        await channel.request(b"head", b"data")
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
        await channel.request(b"head", b"data")


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

"""Waiting helpers for the throwaway Synapse, the demo and the tests: a free loopback port, a poll until true.

Nothing here talks to Matrix; bot/demo/synapse.py and bot/demo/matrix.py use these, and so do
the tests that start their own listeners.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["free_port", "wait_for"]

T = TypeVar("T")


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the usual bind-to-0 trick; racy but fine locally)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(
    predicate_coro_fn: Callable[[], Awaitable[T] | T],
    timeout: float = 15.0,
    interval: float = 0.1,
    *,
    description: str | None = None,
) -> T:
    """Poll `predicate_coro_fn` (sync or async) until it returns something truthy, and return it.

    Exceptions from the predicate propagate. On timeout raises TimeoutError naming the
    predicate and its last value.
    """
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        value = predicate_coro_fn()
        if inspect.isawaitable(value):
            value = await value
        attempts += 1
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            what = description or getattr(predicate_coro_fn, "__qualname__", repr(predicate_coro_fn))
            raise TimeoutError(
                f"condition {what} not met within {timeout:.1f}s ({attempts} attempts); last value: {value!r}"
            )
        await asyncio.sleep(interval)

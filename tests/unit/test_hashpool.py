"""The hashing threads: bounded in number, and niced so that a shared homeserver keeps priority."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from bot.hashpool import hash_pool, lower_priority

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")


def own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_hashing_threads_run_at_the_configured_niceness_and_the_bot_keeps_its_own() -> None:
    process = own_niceness()
    pool = hash_pool(2, max(10, process))
    try:
        seen = {pool.submit(own_niceness).result() for _ in range(8)}
    finally:
        pool.shutdown()
    assert seen == {max(10, process)}
    assert own_niceness() == process  # only the pool's threads were niced


def test_niceness_zero_leaves_the_threads_at_the_bots_priority() -> None:
    pool = hash_pool(1, 0)
    try:
        assert pool.submit(own_niceness).result() == own_niceness()
    finally:
        pool.shutdown()


def test_a_thread_already_nicer_than_asked_is_left_as_it_is() -> None:
    found: list[int] = []

    def in_a_thread() -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 15)
        lower_priority(10)  # asking for 10 must not raise the thread's priority back up
        found.append(own_niceness())

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert found == [15]

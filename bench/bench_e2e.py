"""End-to-end benchmark: modbot against a local Synapse, next to a do-nothing appservice.

    python bench/bench_e2e.py [--events 200] [--rounds 2] [--ideal] [--rate R] [--known-share 0.5] [--repeat-share 0] [--senders 8]

One throwaway Synapse (the stage of `bot/demo/stage.py`) runs with two (with --ideal three)
appservices registered and running throughout: modbot, a separate `python -m bot run` process, and a do-nothing
appservice (this file run with --serve-baseline, also a separate process) that answers every
transaction with {} and notes when each event arrived. There are two rooms alike (same
creator, settings and members): modbot's bot has joined the protected one, the do-nothing
bot the other, and Synapse pushes a room only to an appservice with a joined user.

  A  posts to the do-nothing appservice's room. events/s from the first send to the last
     event's arrival; latency send -> arrival.
  B  the same posts to modbot's protected room. events/s from the first send until modbot
     has processed every event (its /health counts; the exact time from its database);
     latency send -> redaction for known posts (the redaction's origin_server_ts), and
     send -> processed for all posts. Peak RSS is modbot's VmHWM.
  C  with --ideal, the same posts to a third room like the others, whose appservice makes
     exactly modbot's requests to Synapse and nothing else: it downloads every media and, for
     the media it is told are known, quarantines it, redacts the event, bans the sender and
     posts a notice. It scans nothing and keeps nothing, so its rate is the most any scanner
     asking the same of Synapse can reach on this machine; modbot / ideal is modbot's own
     overhead. Its known posts use a copy of the known media with other bytes, because
     Synapse quarantines every file with the same SHA-256 together.

The posts (distinct generated ~1 MP JPEGs, uploaded before the clock starts) are split into
--rounds chunks, and the phases alternate A B (C), (C) B A, ... chunk by chunk: on a shared
machine whose speed drifts, every phase sees the same conditions on average. Each phase's
rate is its events over its summed time. Posts are m.image events from several users over
parallel lanes, as fast as they go or paced at --rate. Known posts each come from a fresh
user, because modbot bans the sender of known media. Redactions are read once at the end
(the moderator's /messages), so no phase carries an observer's load on Synapse. Everything
is on loopback; every process is stopped at the end, on error too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import numpy as np
import yaml
from aiohttp import web
from PIL import Image

import bot
from bot.demo.matrix import MatrixUser, register_appservice_user
from bot.demo.waiting import free_port, wait_for
from bot.intake.registration import new_token
from bot.demo.samples import encode, make_photo
from bot.cli.scan import add_images
from bot.demo.stage import KNOWN_LIST, Stage, build_stage

MB = 1024 * 1024
# Where the `bot` package comes from (PYTHONPATH may point at another checkout): modbot and
# the baseline run from there too, so every process runs the same code.
REPO = Path(bot.__file__).resolve().parent.parent
BASELINE_LOCALPART = "baseline"
IDEAL_LOCALPART = "ideal"
HEALTH_POLL = 0.05  # seconds between polls while starting up
# ... and while a phase runs. Each end time comes from the appservice's own record (arrival,
# processed_at), not from the poll; modbot's /health reads its database (two queries, the
# read shared for at least a second: bot/probes.py), so the end of a phase is seen up to a
# second late, which adds idle time, not CPU; 20 polls a second would be a cost to modbot's
# CPU that no operator's probe imposes.
PHASE_POLL = 0.25
SETUP_PARALLEL = 8  # concurrent requests while registering users and uploading media


# -- the do-nothing appservice (runs in its own process) ------------------------------------


def serve_baseline(port: int) -> None:
    """Answer every transaction with {} and remember when each message event arrived."""
    arrivals: dict[str, float] = {}

    async def transaction(request: web.Request) -> web.Response:
        now = time.time()
        body = await request.json()
        for event in body.get("events", []):
            if event.get("type") == "m.room.message":
                arrivals.setdefault(event["event_id"], now)
        return web.json_response({})

    run_helper_appservice(port, transaction, arrivals)


def run_helper_appservice(
    port: int, transaction: Callable[[web.Request], Awaitable[web.Response]], done: dict[str, float],
    failures: list[str] | None = None, **posts: Callable[[web.Request], Awaitable[web.Response]],
) -> None:
    """Serve a benchmark appservice: its transaction handler, plus what Bench._helper_phase
    reads: /bench/count (events done, and failures) and /bench/arrivals (event id -> when)."""

    async def count(_request: web.Request) -> web.Response:
        return web.json_response({"count": len(done), "failures": failures or []})

    async def arrivals(_request: web.Request) -> web.Response:
        return web.json_response(done)

    app = web.Application()
    app.router.add_put("/_matrix/app/v1/transactions/{txn}", transaction)
    for path, handler in posts.items():
        app.router.add_post(f"/bench/{path}", handler)
    app.router.add_get("/bench/count", count)
    app.router.add_get("/bench/arrivals", arrivals)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_ideal(port: int) -> None:
    """An appservice that asks of Synapse exactly what modbot asks, and nothing more.

    It downloads every posted media, and for media it was told are known it quarantines the
    media, redacts the event, bans the sender and posts a notice in its management room,
    with as many events in flight as modbot. It scans nothing, keeps nothing on disk, and
    answers transactions at once: its rate is the most any scanner could reach on this
    Synapse and machine, and modbot's distance from it is modbot's own overhead.
    """
    setup: dict[str, Any] = {}
    processed: dict[str, float] = {}
    failures: list[str] = []
    pending: set[asyncio.Task[None]] = set()

    async def handle(event: dict[str, Any]) -> None:
        user: MatrixUser = setup["user"]
        url, room, event_id = event["content"]["url"], event["room_id"], event["event_id"]
        async with setup["limit"]:
            try:
                await user.download(url)
                if url in setup["known"]:
                    await user.quarantine_media(url)
                    await user.redact(room, event_id, "known media")
                    await user.ban(room, event["sender"], "known media")
                    await user.send_message(setup["management_room"], {
                        "msgtype": "m.notice",
                        "body": f"known media from {event['sender']} in {room}: {event_id} redacted, sender banned",
                    })
            except Exception as e:  # noted and reported; the event still counts as handled
                failures.append(f"{event_id}: {e!r}")
            processed[event_id] = time.time()

    async def transaction(request: web.Request) -> web.Response:
        body = await request.json()
        for event in body.get("events", []):
            if event.get("type") == "m.room.message" and isinstance(event.get("content", {}).get("url"), str):
                task = asyncio.ensure_future(handle(event))
                pending.add(task)
                task.add_done_callback(pending.discard)
        return web.json_response({})

    async def configure(request: web.Request) -> web.Response:
        body = await request.json()
        setup.update(
            user=MatrixUser(body["base_url"], body["user_id"], body["as_token"]),
            known=set(body["known"]),
            management_room=body["management_room"],
            limit=asyncio.Semaphore(body["concurrency"]),
        )
        return web.json_response({})

    run_helper_appservice(port, transaction, processed, failures, setup=configure)


# -- media ------------------------------------------------------------------------------------


def make_jpeg(seed: int, width: int) -> bytes:
    """A distinct photo-like JPEG, width x 3/4 width pixels (runs in a worker process).

    make_photo at 1 MP costs ~0.35 s; drawn at half size, upscaled and given fresh noise (so
    it compresses like a photo) it costs ~0.09 s and is still unrelated to every other seed.
    """
    height = width * 3 // 4
    img = make_photo(seed, (width // 2, height // 2)).resize((width, height), Image.BICUBIC)
    noise = np.random.default_rng(seed).integers(-6, 7, (height, width, 3), dtype=np.int16)
    pixels = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "JPEG", quality=85)


# -- processes --------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Runs in a child before exec: an interrupted benchmark leaves no process behind."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: best effort only
        pass


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state is [0]), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def proc_cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = _proc_stat(pid) if pid is not None else None
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


KERNEL = "in the kernel"  # of the bot process's threads, all kinds together


def thread_cpu_seconds(pid: int | None) -> dict[str, float]:
    """CPU time of a process's live threads: the main thread (modbot's event loop) and the
    others (aiosqlite runs each database connection in a thread of its own, asyncio.to_thread
    its pool; Python 3.11 gives them no name the kernel shows, so they are not told apart),
    and apart the part of both spent in the kernel (system calls: sockets, fsync, futexes)."""
    spent: dict[str, float] = {"event loop": 0.0, "threads": 0.0, KERNEL: 0.0}
    if pid is None:
        return spent
    try:
        tids = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return spent
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        kind = "event loop" if tid == pid else "threads"
        spent[kind] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        spent[KERNEL] += int(fields[12]) / os.sysconf("SC_CLK_TCK")
    return spent


def descendants_cpu_seconds(pid: int | None) -> float:
    """CPU time of every live descendant of a process (modbot's hashing fork server and its
    workers), read live since they are long-lived, plus what those descendants reaped from
    children that ended (cutime + cstime): a worker replaced after a hostile file still counts."""
    if pid is None:
        return 0.0
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        fields = stats[child]
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        todo += children.get(child, [])
    return total / os.sysconf("SC_CLK_TCK")


def proc_peak_rss(pid: int | None) -> int | None:
    """The process's peak resident set size (VmHWM) in bytes."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Child:
    """A helper process of the benchmark, logging to a file."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}")

    async def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=str(REPO),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=_die_with_parent,
            )

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def count_in_log(self, *needles: str) -> int:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if any(n in line for n in needles))


async def get_json(session: aiohttp.ClientSession, url: str) -> Any | None:
    try:
        async with session.get(url) as resp:
            if resp.status != 200:
                return None
            return await resp.json()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None


# -- posts, sends, observation ----------------------------------------------------------------


@dataclass
class Post:
    seed: int
    known: bool
    sender: MatrixUser
    mxc: str = ""
    size: int = 0
    ideal_mxc: str = ""  # known posts: a second upload, which the ideal appservice quarantines

    def mxc_for(self, phase: str) -> str:
        return self.ideal_mxc if phase == "C" and self.ideal_mxc else self.mxc


@dataclass(frozen=True)
class Sent:
    event_id: str
    at: float  # wall clock just before the send request
    known: bool


async def send_posts(
    room: str, posts: list[Post], *, lanes: int, rate: float | None, width: int, phase: str
) -> list[Sent]:
    """Send every post as an m.image event; `lanes` requests in flight, paced at `rate`/s if given."""
    sent: list[Sent | None] = [None] * len(posts)
    order = iter(range(len(posts)))  # shared by the lanes: each takes the next post
    start = time.time()

    async def lane() -> None:
        for i in order:
            if rate:
                await asyncio.sleep(max(0.0, start + i / rate - time.time()))
            post = posts[i]
            at = time.time()
            event_id = await post.sender.send_image(
                room, post.mxc_for(phase), body=f"photo{post.seed}.jpg", mimetype="image/jpeg",
                size=post.size, w=width, h=width * 3 // 4,
            )
            sent[i] = Sent(event_id, at, post.known)

    await asyncio.gather(*(lane() for _ in range(lanes)))
    return [s for s in sent if s is not None]


async def redactions(user: MatrixUser, room: str) -> dict[str, float]:
    """Every redaction in `room`: redacted event id -> the redaction's origin_server_ts (s).

    Read once, after a phase, with /messages filtered to redactions: the timestamps are the
    homeserver's, so nothing has to watch live, and neither phase carries an observer's load.
    """
    found: dict[str, float] = {}
    params = {"dir": "b", "limit": "1000", "filter": json.dumps({"types": ["m.room.redaction"]})}
    while True:
        resp = await user.request("GET", f"/_matrix/client/v3/rooms/{quote(room, safe='')}/messages", params=params)
        for event in resp.get("chunk", []):
            target = event.get("redacts") or event.get("content", {}).get("redacts")
            if target:  # the top-level key up to room version 10, in content from 11 on
                found.setdefault(target, event["origin_server_ts"] / 1000)
        if not resp.get("chunk") or not resp.get("end"):
            return found
        params["from"] = resp["end"]


@dataclass
class PhaseResult:
    name: str
    events: int
    known: int
    seconds: float
    send_seconds: float
    latency_what: str
    latencies: list[float]
    peak_rss: int | None
    cpu: dict[str, float]
    extra_latency: tuple[str, list[float]] | None = None
    notes: list[str] = field(default_factory=list)
    threads: dict[str, float] = field(default_factory=dict)  # modbot's CPU by thread kind (phase B)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    @classmethod
    def combine(cls, parts: list[PhaseResult]) -> PhaseResult:
        """One phase's chunks as one result: counts and times summed, latencies pooled."""
        first = parts[0]
        extra = None
        if all(p.extra_latency for p in parts):
            extra = (first.extra_latency[0], [v for p in parts for v in p.extra_latency[1]])  # type: ignore[index]
        return cls(
            name=first.name,
            events=sum(p.events for p in parts),
            known=sum(p.known for p in parts),
            seconds=sum(p.seconds for p in parts),
            send_seconds=sum(p.send_seconds for p in parts),
            latency_what=first.latency_what,
            latencies=[v for p in parts for v in p.latencies],
            peak_rss=max((p.peak_rss for p in parts if p.peak_rss is not None), default=None),
            cpu={k: sum(p.cpu.get(k, 0.0) for p in parts) for k in first.cpu},
            extra_latency=extra,
            notes=[n for p in parts for n in p.notes],
            threads={k: sum(p.threads.get(k, 0.0) for p in parts) for k in first.threads},
        )


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, stolen): CPU time the whole machine has spent busy (all cores, kernel included)
    and the time a virtual machine's host gave its cores to others, from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    # guest and guest_nice (fields 8, 9) are already counted in user and nice.
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:7]) - idle) / tick, steal / tick


class CpuMeter:
    """CPU seconds each process spends between start() and stop(), the rest of the
    machine's (other processes, the kernel's network work) and what the host of a virtual
    machine stole: a noisy neighbour shows in the last two."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self.threads: dict[str, float] = {}  # modbot's own CPU by thread kind, since start()
        self._threads_start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        if "modbot" in self.pids:
            now["modbot hashing"] = descendants_cpu_seconds(self.pids["modbot"])
            # Not summed into the machine's total below: they split modbot's own figure.
            self.threads = {k: v - self._threads_start.get(k, 0.0)
                            for k, v in thread_cpu_seconds(self.pids["modbot"]).items()}
        now["bench"] = time.process_time()
        now["machine"], now["stolen"] = machine_cpu_seconds()
        return now

    def start(self) -> None:
        self._start = self._now()
        self._threads_start = dict(self.threads)

    def stop(self) -> dict[str, float]:
        spent = {name: value - self._start[name] for name, value in self._now().items()}
        machine, stolen = spent.pop("machine"), spent.pop("stolen")
        spent["rest"] = max(0.0, machine - sum(spent.values()))
        spent["stolen"] = stolen  # by the host of a virtual machine: a noisy neighbour
        return spent


# -- the benchmark ----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self._stage: Stage | None = None
        self.modbot: Child | None = None
        self.baseline: Child | None = None
        self.baseline_port = 0
        self.baseline_bot: MatrixUser | None = None  # with the do-nothing appservice's token
        self.baseline_room = ""  # phase A's room; phase B's is the stage's protected room
        self.ideal: Child | None = None
        self.ideal_port = 0
        self.ideal_bot: MatrixUser | None = None
        self.ideal_room = ""
        self.ideal_management = ""
        self._failures_seen: dict[str, int] = {}  # per helper appservice, failures already reported
        self.posts: list[Post] = []
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self.setup_seconds = 0.0
        self._profiles = 0  # phase B chunks profiled so far

    @property
    def stage(self) -> Stage:
        if self._stage is None:
            raise RuntimeError("the stage is not built yet")
        return self._stage

    @property
    def profile_path(self) -> Path:
        return self.workdir / "modbot.spy"

    @property
    def modbot_url(self) -> str:
        return f"http://127.0.0.1:{self.stage.config_data['appservice']['port']}"

    @property
    def baseline_url(self) -> str:
        return f"http://127.0.0.1:{self.baseline_port}"

    @property
    def ideal_url(self) -> str:
        return f"http://127.0.0.1:{self.ideal_port}"

    @property
    def rooms(self) -> list[str]:
        return [r for r in (self.baseline_room, self.stage.room, self.ideal_room) if r]

    def synapse_pid(self) -> int | None:
        """Synapse's process: the one whose command line names this stage's homeserver.yaml."""
        wanted = str(self.stage.synapse.config_path).encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if wanted in (entry / "cmdline").read_bytes().split(b"\0"):
                        return int(entry.name)
                except OSError:
                    continue
        return None

    async def close(self) -> None:
        for child in (self.modbot, self.baseline, self.ideal):
            if child is not None:
                await child.stop()
        for user in (self.baseline_bot, self.ideal_bot):
            if user is not None:
                await user.close()
        if self._stage is not None:
            await self._stage.stop()
        await self.http.close()

    # -- setup ----------------------------------------------------------------------------

    async def setup(self) -> None:
        args = self.args
        started = time.monotonic()
        n_known = round(args.events * args.known_share)
        rng = random.Random(args.seed)
        known_flags = [True] * n_known + [False] * (args.events - n_known)
        rng.shuffle(known_flags)
        seeds = [1000 + i for i in range(args.events)]

        # Image generation is CPU-bound: two worker processes draw while Synapse boots.
        loop = asyncio.get_running_loop()
        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
        images = asyncio.gather(*(loop.run_in_executor(pool, make_jpeg, s, args.width) for s in seeds))
        # After a failed or cancelled setup nobody awaits the drawings: mark their end as seen.
        images.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            say(f"setup: booting Synapse, drawing {args.events} images of {args.width}x{args.width * 3 // 4} ...")
            self._stage = await build_stage(self.workdir / "stage", log_level=args.synapse_log_level)
            await self._add_appservices()
            jpegs = await images
        finally:
            images.cancel()  # a no-op once done
            pool.shutdown(wait=False, cancel_futures=True)
        await self._write_known_list([j for j, known in zip(jpegs, known_flags) if known])

        say(f"setup: {time.monotonic() - started:.0f} s; registering {args.senders} posters and "
            f"{n_known} one-post known senders, uploading ...")
        limit = asyncio.Semaphore(SETUP_PARALLEL)

        async def enrol(prefix: str) -> MatrixUser:
            async with limit:
                user = await self.stage.new_user(prefix)
                for room in self.rooms:  # public: no invite needed
                    await user.join(room)
                return user

        posters = await asyncio.gather(*(enrol("poster") for _ in range(args.senders)))
        known_senders = iter(await asyncio.gather(*(enrol("known") for _ in range(n_known))))
        unknown = 0
        for seed, known in zip(seeds, known_flags):
            if known:
                sender = next(known_senders)
            else:
                sender, unknown = posters[unknown % len(posters)], unknown + 1
            self.posts.append(Post(seed, known, sender))

        async def upload(post: Post, data: bytes) -> None:
            async with limit:
                post.mxc = await post.sender.upload(data, "image/jpeg", f"photo{post.seed}.jpg")
                post.size = len(data)
                if post.known and self.ideal is not None:
                    # Other bytes (a trailing zero, which JPEG decoders ignore): Synapse
                    # quarantines every copy with the same SHA-256 along with the one named.
                    post.ideal_mxc = await post.sender.upload(data + b"\0", "image/jpeg", f"photo{post.seed}.jpg")

        if args.repeat_share:
            # A share of the posts that match nothing carry the bytes of an earlier one, uploaded
            # again (a new mxc): a meme re-posted, one file posted from many accounts.
            plain = [i for i, post in enumerate(self.posts) if not post.known]
            for n, i in enumerate(plain[1:], start=1):
                if rng.random() < args.repeat_share:
                    jpegs[i] = jpegs[plain[rng.randrange(n)]]
        await asyncio.gather(*(upload(p, j) for p, j in zip(self.posts, jpegs)))
        del jpegs
        if self.ideal is not None and self.ideal_bot is not None:
            async with self.http.post(f"{self.ideal_url}/bench/setup", json={
                "base_url": self.stage.synapse.base_url,
                "user_id": self.ideal_bot.user_id,
                "as_token": self.ideal_bot.access_token,
                "management_room": self.ideal_management,
                "known": [p.ideal_mxc for p in self.posts if p.known],
                "concurrency": args.concurrency,
            }) as resp:
                resp.raise_for_status()
        self.setup_seconds = time.monotonic() - started
        say(f"setup: done in {self.setup_seconds:.0f} s")

    async def _helper_appservice(self, localpart: str, flag: str, name: str) -> tuple[Child, int, str, Path]:
        """Start a benchmark appservice (this file with `flag`) and write its registration."""
        port = free_port()
        as_token = new_token()
        registration = self.workdir / f"{localpart}-registration.yaml"
        registration.write_text(yaml.safe_dump({
            "id": f"bench-{localpart}",
            "url": f"http://127.0.0.1:{port}",
            "as_token": as_token,
            "hs_token": new_token(),
            "sender_localpart": localpart,
            "rate_limited": False,  # as modbot's registration
            "namespaces": {"users": [{"exclusive": True, "regex": f"^@{localpart}:.*$"}], "aliases": [], "rooms": []},
        }))
        child = Child(name, [sys.executable, str(Path(__file__).resolve()), flag, str(port)], self.workdir / f"{localpart}.log")
        # Up before Synapse pushes it anything: a failed push would put it in back-off.
        await child.start()
        await wait_for(lambda: get_json(self.http, f"http://127.0.0.1:{port}/bench/count"), timeout=30,
                       interval=HEALTH_POLL, description=f"the {name} to answer")
        return child, port, as_token, registration

    async def _add_appservices(self) -> None:
        """Register the do-nothing appservice (and with --ideal the ideal one) beside modbot (a
        Synapse restart) and seat each bot in a room of its own, made like the protected room:
        the same creator, power levels and join rule, and later the same members. Synapse
        pushes a room only to an appservice with a user joined to it, so each room's posts
        reach one appservice alone.
        """
        stage = self.stage
        self.baseline, self.baseline_port, baseline_token, registration = await self._helper_appservice(
            BASELINE_LOCALPART, "--serve-baseline", "baseline appservice"
        )
        registrations = [registration]
        if self.args.ideal:
            self.ideal, self.ideal_port, ideal_token, registration = await self._helper_appservice(
                IDEAL_LOCALPART, "--serve-ideal", "ideal appservice"
            )
            registrations.append(registration)
        await stage.synapse.stop()
        stage.synapse.appservice_files.extend(r.resolve() for r in registrations)
        await stage.synapse.start()

        bot = await register_appservice_user(stage.synapse.base_url, baseline_token, BASELINE_LOCALPART)
        self.baseline_room = await stage.moderator.create_room(
            "baseline", invite=[bot], power_level_content_override={"users": {stage.bot_user_id: 100}}
        )
        self.baseline_bot = MatrixUser(stage.synapse.base_url, bot, baseline_token)
        if self.ideal is not None:
            bot = await register_appservice_user(stage.synapse.base_url, ideal_token, IDEAL_LOCALPART)
            await stage.admin.make_admin(bot)  # to quarantine, as modbot
            power = {"users": {bot: 100}}
            self.ideal_room = await stage.moderator.create_room("ideal", invite=[bot], power_level_content_override=power)
            self.ideal_management = await stage.moderator.create_room(
                "ideal management", invite=[bot], power_level_content_override=power
            )
            self.ideal_bot = MatrixUser(stage.synapse.base_url, bot, ideal_token)
            for room in (self.ideal_room, self.ideal_management):
                await self.ideal_bot.join(room)
        # Public: users join without an invite, which halves the membership events to set up.
        for room in self.rooms:
            await stage.moderator.send_state(room, "m.room.join_rules", "", {"join_rule": "public"})
        await self.baseline_bot.join(self.baseline_room)

    async def start_modbot(self) -> None:
        """Before the first phase: modbot starts, joins the protected room and settles."""
        self.stage.write_config(
            processing={
                "concurrency": self.args.concurrency,
                "max_media_bytes": self.args.size_cap_mb * MB,
                "download_timeout": 30,
            },
            logging={"level": "INFO"},
        )
        self.modbot = Child(
            "modbot", [sys.executable, "-m", "bot", "run", "-c", str(self.stage.config_path)],
            self.workdir / "modbot.log",
        )
        await self.modbot.start()
        await wait_for(self._modbot_ready, timeout=60, interval=HEALTH_POLL, description="modbot to become ready")
        await asyncio.sleep(1)  # let Synapse deliver what it held back while modbot was down
        health = await get_json(self.http, f"{self.modbot_url}/health") or {}
        if sum(health.get("events", {}).values()):
            raise RuntimeError(f"modbot received media events before any was sent: {health.get('events')}")

    async def _write_known_list(self, known_jpegs: list[bytes]) -> None:
        folder = self.workdir / "known-images"
        folder.mkdir()
        paths = []
        for i, data in enumerate(known_jpegs):
            path = folder / f"known{i}.jpg"
            path.write_bytes(data)
            paths.append(path)
        add_images(paths, self.stage.config(), KNOWN_LIST, None)
        shutil.rmtree(folder)  # like every benign stand-in here, it is not kept on disk

    async def _modbot_ready(self) -> bool:
        assert self.modbot is not None
        self.modbot.check_alive()
        health = await get_json(self.http, f"{self.modbot_url}/health")
        return bool(health) and health.get("status") == "ok"

    # -- phases ---------------------------------------------------------------------------

    def _meter(self) -> CpuMeter:
        return CpuMeter({
            "synapse": self.synapse_pid(),
            "modbot": self.modbot.pid if self.modbot else None,
            "baseline AS": self.baseline.pid if self.baseline else None,
            **({"ideal AS": self.ideal.pid} if self.ideal else {}),
        })

    async def _send(self, room: str, posts: list[Post], phase: str) -> tuple[list[Sent], float]:
        started = time.time()
        sent = await send_posts(
            room, posts, lanes=self.args.senders, rate=self.args.rate, width=self.args.width, phase=phase
        )
        return sent, time.time() - started

    async def phase_baseline(self, posts: list[Post]) -> PhaseResult:
        """Send `posts` to the do-nothing appservice's room; done when all have arrived there."""
        assert self.baseline is not None
        return await self._helper_phase(
            posts, self.baseline, self.baseline_url, self.baseline_room, "A",
            name="A: do-nothing appservice", latency_what="send -> delivered to the appservice (all)",
        )

    async def phase_ideal(self, posts: list[Post]) -> PhaseResult:
        """Send `posts` to the ideal appservice's room; done when it has handled them all."""
        assert self.ideal is not None
        return await self._helper_phase(
            posts, self.ideal, self.ideal_url, self.ideal_room, "C",
            name="C: ideal appservice (modbot's requests, no scanning)", latency_what="send -> handled (all)",
        )

    async def _helper_phase(
        self, posts: list[Post], child: Child, url: str, room: str, phase: str, *, name: str, latency_what: str
    ) -> PhaseResult:
        """A phase of one of the benchmark's own appservices: send `posts` to its room, until its
        /bench/count has grown by as many; its /bench/arrivals says when each was done."""
        n = len(posts)
        before = (await get_json(self.http, f"{url}/bench/count") or {}).get("count", 0)
        meter = self._meter()
        meter.start()
        sent, send_seconds = await self._send(room, posts, phase)
        counted: dict[str, Any] = {}

        async def all_done() -> bool:
            nonlocal counted
            child.check_alive()
            counted = await get_json(self.http, f"{url}/bench/count") or {}
            return counted.get("count", 0) >= before + n

        await wait_for(all_done, timeout=self.args.timeout, interval=PHASE_POLL,
                       description=f"the {child.name} to see {n} events")
        cpu = meter.stop()
        done = await get_json(self.http, f"{url}/bench/arrivals") or {}
        missing = [s.event_id for s in sent if s.event_id not in done]
        if missing:
            raise RuntimeError(f"{len(missing)} sent events never reached the {child.name}")
        failures = counted.get("failures", [])[self._failures_seen.get(url, 0):]  # only the ideal reports any
        self._failures_seen[url] = self._failures_seen.get(url, 0) + len(failures)
        return PhaseResult(
            name=name,
            events=n,
            known=sum(p.known for p in posts),
            seconds=max(done[s.event_id] for s in sent) - min(s.at for s in sent),
            send_seconds=send_seconds,
            latency_what=latency_what,
            latencies=[done[s.event_id] - s.at for s in sent],
            peak_rss=None,  # only modbot's memory is in question here
            cpu=cpu,
            notes=[f"{child.name}: {f}" for f in failures[:3]],
        )

    async def phase_modbot(self, posts: list[Post]) -> tuple[PhaseResult, list[Sent]]:
        """Send `posts` to the protected room; done when modbot has processed them all.

        Known posts' redaction latencies are filled in by `finish_modbot`, after every round.
        """
        assert self.modbot is not None
        modbot = self.modbot
        n = len(posts)
        before = (await get_json(self.http, f"{self.modbot_url}/health") or {}).get("events", {})
        spy = await self._start_profiler() if self.args.profile else None
        meter = self._meter()
        meter.start()
        sent, send_seconds = await self._send(self.stage.room, posts, "B")
        health: dict[str, Any] = {}

        async def all_processed() -> bool:
            nonlocal health
            modbot.check_alive()
            health = await get_json(self.http, f"{self.modbot_url}/health") or {}
            events = health.get("events", {})
            finished = sum(v - before.get(k, 0) for k, v in events.items() if k != "pending")
            return finished >= n and not events.get("pending") and health.get("queue_depth") == 0

        await wait_for(all_processed, timeout=self.args.timeout, interval=PHASE_POLL,
                       description=f"modbot to process {n} events")
        done_polled = time.time()
        cpu = meter.stop()
        if spy is not None:
            await spy.stop(signal.SIGINT)  # py-spy writes its samples on SIGINT

        at = {s.event_id: s.at for s in sent}
        processed = self._processed_times()
        if processed and all(e in processed for e in at):
            end = max(processed[e] for e in at)
            extra = ("send -> processed (all, modbot's database)", [processed[e] - at[e] for e in at])
        else:  # no readable database: the /health poll that saw the last event finished
            end, extra = done_polled, None
        notes = []
        failed = health.get("events", {}).get("failed", 0) - before.get("failed", 0)
        if failed:
            notes.append(f"{failed} events failed in modbot")
        result = PhaseResult(
            name="B: modbot",
            events=n,
            known=sum(s.known for s in sent),
            seconds=end - min(at.values()),
            send_seconds=send_seconds,
            latency_what="send -> redaction (known)",
            latencies=[],
            peak_rss=None,
            cpu=cpu,
            extra_latency=extra,
            notes=notes,
            threads=meter.threads,
        )
        return result, sent

    async def _start_profiler(self) -> Child:
        """py-spy sampling modbot's bot process (not its hashing workers) for one phase B;
        each phase appends to its own file, merged by print_profile."""
        assert self.modbot is not None and self.modbot.pid is not None
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self._profiles += 1
        path = self.profile_path.with_suffix(f".{self._profiles}.spy")
        spy = Child("py-spy", [exe, "record", "--pid", str(self.modbot.pid), "--format", "raw", "--rate", "250", "--gil",
                               "--nonblocking", "--output", str(path)], self.workdir / "py-spy.log")
        await spy.start()
        await asyncio.sleep(1)  # attached before the first post
        spy.check_alive()
        return spy

    async def finish_modbot(self, result: PhaseResult, sent: list[Sent]) -> PhaseResult:
        """Phase B's redaction latencies and checks, read once from the room, and peak RSS."""
        assert self.modbot is not None
        known_ids = {s.event_id for s in sent if s.known}
        at = {s.event_id: s.at for s in sent}
        redacted = await redactions(self.stage.moderator, self.stage.room)
        if known_ids - redacted.keys():
            result.notes.append(f"{len(known_ids - redacted.keys())} known posts were not redacted")
        if redacted.keys() - known_ids:
            result.notes.append(f"{len(redacted.keys() - known_ids)} unknown posts were redacted (false positives)")
        result.latencies = [redacted[e] - at[e] for e in known_ids if e in redacted]
        result.peak_rss = proc_peak_rss(self.modbot.pid)
        return result

    def _processed_times(self) -> dict[str, float]:
        """event id -> processed_at from modbot's SQLite database (read only), {} if unreadable.

        Tied to the `events` table of bot/record/tables.py; the bench falls back to its
        /health poll if that changes.
        """
        url = self.stage.config_data["database"]["url"]
        prefix = "sqlite+aiosqlite:///"
        if not url.startswith(prefix):
            return {}
        try:
            db = sqlite3.connect(f"file:{url[len(prefix):]}?mode=ro", uri=True)
            try:
                rows = db.execute("SELECT event_id, processed_at FROM events WHERE processed_at IS NOT NULL")
                return {event_id: at for event_id, at in rows}
            finally:
                db.close()
        except sqlite3.Error:
            return {}


# -- report -----------------------------------------------------------------------------------


def say(msg: str = "") -> None:
    print(msg, flush=True)


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:,.0f}"


def _mb(size: int | None) -> str:
    return "-" if size is None else f"{size / MB:,.0f} MB"


def report(
    bench: Bench, a: PhaseResult, b: PhaseResult, c: PhaseResult | None, parts: dict[str, list[PhaseResult]]
) -> None:
    args = bench.args
    sizes = [p.size for p in bench.posts]
    bound = args.concurrency * args.size_cap_mb * MB + 200 * MB
    rate = f"{args.rate:g}/s offered" if args.rate else "unpaced (as fast as the lanes go)"
    phases = [r for r in (a, b, c) if r is not None]
    order = "A B C, C B A" if c else "A B, B A"
    rounds = len(parts["A"])
    say()
    say(f"Settings: {a.events} events ({a.known} known = {args.known_share:.0%}, each from a fresh user; "
        f"the rest from {args.senders} posters), {args.senders} parallel send lanes, {rate}; "
        f"JPEG {args.width}x{args.width * 3 // 4}, {sum(sizes) / len(sizes) / 1024:,.0f} KiB average; "
        f"modbot concurrency {args.concurrency}, size cap {args.size_cap_mb} MB; "
        + (f"{args.repeat_share:.0%} of the posts matching nothing repeat an earlier one's bytes; " if args.repeat_share else "")
        + f"{rounds} rounds ({order}, ...); {os.cpu_count()} CPUs; setup {bench.setup_seconds:.0f} s.")
    say()
    say("| phase | events | s | events/s | sends/s | latency | p50 ms | p99 ms | bot peak RSS |")
    say("|---|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in phases:
        say(f"| {r.name} | {r.events} | {r.seconds:.1f} | {r.rate:.1f} | {r.events / r.send_seconds:.1f} "
            f"| {r.latency_what} | {_ms(percentile(r.latencies, 50))} | {_ms(percentile(r.latencies, 99))} "
            f"| {_mb(r.peak_rss)} |")
        if r.extra_latency:
            what, values = r.extra_latency
            say(f"| | | | | | {what} | {_ms(percentile(values, 50))} | {_ms(percentile(values, 99))} | |")
    if rounds > 1:
        say()
        names = "ABC"[: len(phases)]
        say("| round | " + " | ".join(f"{n} events/s" for n in names) + " | B / A |"
            + (" C / A |" if c else "") + " stolen s |")
        say("|---:|" + "---:|" * (len(names) + (2 if c else 1)) + "---|")
        for i in range(rounds):
            row = [parts[n][i] for n in names]
            ratios = [row[1].rate / row[0].rate] + ([row[2].rate / row[0].rate] if c else [])
            say(f"| {i + 1} | " + " | ".join(f"{r.rate:.1f}" for r in row) + " | "
                + " | ".join(f"{x:.2f}" for x in ratios) + " | "
                + ", ".join(f"{r.cpu.get('stolen', 0):.1f}" for r in row) + " |")
    say()
    ratio = b.rate / a.rate
    say(f"modbot / baseline: {ratio:.2f} ({'meets' if ratio >= 0.8 else 'misses'} the goal of 0.80)")
    if c is not None:
        say(f"ideal / baseline: {c.rate / a.rate:.2f} (the most a scanner making modbot's requests reaches here); "
            f"modbot / ideal: {b.rate / c.rate:.2f}")
    within = b.peak_rss is not None and b.peak_rss <= bound
    say(f"modbot peak RSS {_mb(b.peak_rss)} vs bound concurrency x size cap + 200 MB = {_mb(bound)}: "
        f"{'within' if within else 'OVER'}")
    say()
    names = list(a.cpu)
    say(f"CPU seconds spent during each phase ({os.cpu_count()} cores: up to {os.cpu_count()} s per wall second; "
        "rest = other processes and the kernel; stolen = taken by the host of this virtual machine, "
        "a noisy neighbour that makes the run unrepresentative):")
    say("| phase | wall s | " + " | ".join(names) + " |")
    say("|---|---:|" + "---:|" * len(names))
    for r in phases:
        say(f"| {r.name} | {r.seconds:.1f} | " + " | ".join(f"{r.cpu.get(n, 0):.1f}" for n in names) + " |")
    say()
    say("The same per event, in CPU milliseconds (load-insensitive: compare these across runs and machines; "
        "modbot hashing = its hashing fork server and worker processes):")
    say("| phase | " + " | ".join(names) + " |")
    say("|---|" + "---:|" * len(names))
    for r in phases:
        say(f"| {r.name} | " + " | ".join(f"{r.cpu.get(n, 0) * 1000 / r.events:.2f}" for n in names) + " |")
    bot_ms, hash_ms = (b.cpu.get(n, 0) * 1000 / b.events for n in ("modbot", "modbot hashing"))
    say()
    threads = ", ".join(f"{k} {v * 1000 / b.events:.2f}" for k, v in b.threads.items() if k != KERNEL)
    threads += f"; of which {KERNEL} {b.threads.get(KERNEL, 0.0) * 1000 / b.events:.2f}"
    say(f"modbot CPU per media event: {bot_ms + hash_ms:.2f} ms (bot process {bot_ms:.2f}: {threads}; "
        f"hashing workers {hash_ms:.2f}); goal <= 3.5 ms; Synapse {b.cpu.get('synapse', 0) * 1000 / b.events:.2f} ms")
    notes = [n for r in phases for n in r.notes]
    if bench.modbot is not None:
        errors = bench.modbot.count_in_log(" ERROR ", "Traceback")
        if errors:
            notes.append(f"modbot log: {errors} ERROR/Traceback lines ({bench.modbot.log_path})")
    for note in notes:
        say(f"note: {note}")


def print_profile(first: Path, top: int) -> None:
    """The py-spy samples of every phase B (collapsed stacks), by function: self and total
    share of the bot process's busy samples."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for path in sorted(first.parent.glob(first.stem + ".*.spy")):
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            samples += count
            frames = [_frame_name(f) for f in stack.split(";")]
            own[frames[-1]] = own.get(frames[-1], 0) + count
            for name in set(frames):
                total[name] = total.get(name, 0) + count
    if not samples:
        return
    say(f"\nmodbot's bot process during phase B, py-spy: {samples} busy samples at 250/s, every thread; "
        "self = in the function itself, total = with what it calls:")
    say("| self % | total % | function |")
    say("|---:|---:|---|")
    for name, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        say(f"| {100 * count / samples:.1f} | {100 * total[name] / samples:.1f} | {name} |")
    say("\nCumulative, modbot's own functions:")
    say("| total % | function |")
    say("|---:|---|")
    ours = [(n, c) for n, c in total.items() if "(bot/" in n or " (bot" in n]
    for name, count in sorted(ours, key=lambda kv: -kv[1])[:top]:
        say(f"| {100 * count / samples:.1f} | {name} |")


def _frame_name(frame: str) -> str:
    """`function (path/file.py:line)` as `function (package/file.py)`: lines merged."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})" if where else name


# -- entry point ------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="modbot-bench-"))
    bench = Bench(args, workdir)
    # SIGTERM, like Ctrl-C, cancels the run, so that the finally below stops every process.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        await bench.setup()
        say("starting modbot ...")
        await bench.start_modbot()
        rounds = min(args.rounds, len(bench.posts))
        chunks = [bench.posts[i::rounds] for i in range(rounds)]
        parts: dict[str, list[PhaseResult]] = {"A": [], "B": [], "C": []}
        b_sent: list[Sent] = []
        order = "ABC" if args.ideal else "AB"
        for i, chunk in enumerate(chunks):
            # A B, then B A, ...: a drift in the machine's speed weighs on every phase alike.
            for phase in (order if i % 2 == 0 else order[::-1]):
                say(f"round {i + 1}/{rounds}, phase {phase}: {len(chunk)} events ...")
                if phase == "A":
                    parts["A"].append(await bench.phase_baseline(chunk))
                elif phase == "B":
                    part, sent = await bench.phase_modbot(chunk)
                    parts["B"].append(part)
                    b_sent += sent
                else:
                    parts["C"].append(await bench.phase_ideal(chunk))
        a = PhaseResult.combine(parts["A"])
        b = await bench.finish_modbot(PhaseResult.combine(parts["B"]), b_sent)
        c = PhaseResult.combine(parts["C"]) if parts["C"] else None
        report(bench, a, b, c, parts)
        return 0
    except Exception:
        for child in (bench.modbot, bench.baseline, bench.ideal):
            if child is not None:
                say(f"--- tail of {child.log_path} ---\n{child.log_tail()}")
        raise
    finally:
        await bench.close()
        if args.profile:
            print_profile(bench.profile_path, args.profile)
        if args.workdir or args.keep:
            say(f"files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200, help="media events per phase (default 200)")
    p.add_argument("--rounds", type=int, default=2,
                   help="chunks the posts are sent in, phases alternating A B, B A, ... (default 2)")
    p.add_argument("--ideal", action="store_true",
                   help="add phase C: an appservice making modbot's requests to Synapse without scanning")
    p.add_argument("--rate", type=float, default=None, help="offered events/s (default: as fast as the lanes go)")
    p.add_argument("--known-share", type=float, default=0.5, help="share of posts with known media (default 0.5)")
    p.add_argument("--repeat-share", type=float, default=0.0,
                   help="share of the posts matching nothing whose bytes repeat an earlier post's, uploaded again (default 0)")
    p.add_argument("--senders", type=int, default=8, help="parallel send lanes and poster users (default 8)")
    p.add_argument("--concurrency", type=int, default=4, help="modbot's processing.concurrency (default 4)")
    p.add_argument("--size-cap-mb", type=int, default=50, help="modbot's processing.max_media_bytes in MB")
    p.add_argument("--width", type=int, default=1152, help="image width; height is 3/4 of it (default 1152: ~1 MP)")
    p.add_argument("--timeout", type=float, default=120, help="seconds a phase may take to settle (default 120)")
    p.add_argument("--seed", type=int, default=0, help="seed of the known/unknown order")
    p.add_argument("--synapse-log-level", default="WARNING",
                   help="INFO logs each request's time to synapse.log (costs Synapse CPU; use with --workdir)")
    p.add_argument("--profile", type=int, nargs="?", const=30, default=0, metavar="N",
                   help="sample modbot's bot process (every thread) with py-spy during phase B and print its "
                        "N costliest functions (default 30); needs `py-spy` on the PATH or beside this Python")
    p.add_argument("--workdir", help="keep all files here (default: a temporary directory, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--serve-ideal", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_baseline is None and args.serve_ideal is None:
        if args.events < 1 or not 0 <= args.known_share <= 1 or args.senders < 1 or args.rounds < 1 \
                or not 0 <= args.repeat_share <= 1:
            p.error("need --events >= 1, --senders >= 1, --rounds >= 1, 0 <= --known-share <= 1 and 0 <= --repeat-share <= 1")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_baseline is not None:
        serve_baseline(arguments.serve_baseline)
    elif arguments.serve_ideal is not None:
        serve_ideal(arguments.serve_ideal)
    else:
        try:
            raise SystemExit(asyncio.run(main(arguments)))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("interrupted; every process was stopped", file=sys.stderr)
            raise SystemExit(130) from None

"""Composition root: build every part from the config, start them in order, stop them."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .act.executor import Executor, notice_text, txn_id_for
from .act.retry import ActionRetrier
from .allowlist import Allowlist
from .act.homeserver import Homeserver, HomeserverError
from .classify.base import ClassifierSetupError
from .classify.cache import VerdictCache
from .classify.hashlist import HashListClassifier
from .lists.loaded import ListLoadReport
from .classify.registry import ClassifierRegistry, build_classifiers, effective_classifier_configs
from .classify.runner import ClassifierRunner
from .commands.handlers import build_commands
from .commands.runner import CommandRunner
from .config import Config, ConfigError, load_config
from .act.enforcer import Enforcer
from .record.evidence import AnchorFile, ChainAnchors, ChainKeyError, open_chain_key
from .extract import extract_media_refs
from .eventbudget import EventBudget
from .fetch import MediaFetcher
from .hashing import warm_up
from .hashpool import hash_pool
from .health import RestartWindow
from .intake.endpoint import DurableAppService, IntakeLimits
from .intake.monitor import IntakeMonitor
from .mediafailures import MediaFailureMemory
from .intake.queue import WorkQueue
from .lists.registry import ListRegistry, ReloadResult
from .metrics import Metrics
from .pipeline import Pipeline, PowerCache, RetryLater
from .probes import OperatorEndpoints
from .policy import Policy, with_dry_run
from .record.db import create_engine, migrate
from .record.instance import EXIT_LOCK_LOST, InstanceLock, instance_lock
from .record.liststate import ListStateRepo
from .record.moderation import ModerationStore
from .record.retention import RetentionRunner
from .record.scanning import HoldRepo, VerdictCacheRepo
from .record.store import Store
from .intake.rescan import Rescanner
from .retro import RetroactiveAudit, RetroMatcher

log = logging.getLogger("modbot")


def wants_processing(event: dict[str, Any]) -> bool:
    """Whether an event needs the pipeline: it references media, or tried to and failed."""
    extracted = extract_media_refs(event, max_refs=1)  # one is enough to know; the rest is only counted
    return bool(extracted.refs or extracted.problems or extracted.dropped)


class ModBot:
    def __init__(
        self,
        config: Config,
        *,
        config_path: str | Path | None = None,
        lock: InstanceLock | None = None,
        sandbox_restarts: Callable[[], int] = lambda: 0,
    ) -> None:
        self.config = config
        # One bot per database (bot/record/instance.py): taken first thing in start(),
        # unless run() already took it before building the bot.
        self.instance_lock = lock or instance_lock(config.database.url)
        self.config_path = Path(config_path) if config_path else None
        self.metrics = Metrics()
        self.engine = create_engine(config.database.url)
        self.store = Store(self.engine, action_lease=config.processing.action_lease)
        self.moderation = ModerationStore(self.engine)
        self.base_policy: Policy = config.policy
        self.policy: Policy = config.policy
        self.dry_run_overrides: dict[str | None, bool] = {}
        self.allowlist = Allowlist()
        self.commands = CommandRunner(
            self, build_commands(), prefix=config.commands.prefix, management_power=config.commands.management_power,
            refusal_reply_interval=config.commands.refusal_reply_interval,
        )
        self.protected: set[str] = set()
        self.management_room: str | None = None
        self.started_at = time.time()
        # Loaded now, reloaded without a restart when a file changes (bot/lists/registry.py); matching
        # whose lists gain entries runs against the media history (bot/retro.py).
        # A file that would empty a list, is mostly rejected lines or drops too many entries
        # is held until accepted (bot/lists/guard.py); what each list last loaded is in the
        # database, which is read at start (check_history) and while a list is held.
        self.list_states = ListStateRepo(self.engine)
        self.lists = ListRegistry(
            config.hash_lists, Path.cwd(), on_reload=self._lists_reloaded,
            history=self.list_states, max_drop_share=config.hashlist.max_drop_share,
        )
        self.lists.load()
        self.retro: RetroMatcher | None = None
        self._retro_runs: set[asyncio.Task[object]] = set()
        # The configured classifiers (docs/classifiers.md), the hash lists' among them.
        try:
            self.classifier_slots = build_classifiers(
                effective_classifier_configs(config),
                ClassifierRegistry.discover(),
                list_source=self.lists,
                pdq_min_quality=config.hashlist.pdq_min_quality,
                base_dir=Path.cwd(),
            )
        except ClassifierSetupError as e:
            raise ConfigError(f"{config_path or 'config'}: {e}") from None
        self.classifiers = [slot.classifier for slot in self.classifier_slots]
        self.hashlist = next((c for c in self.classifiers if isinstance(c, HashListClassifier)), None) or (
            HashListClassifier(self.lists, pdq_min_quality=config.hashlist.pdq_min_quality)
        )
        self.verdict_cache = VerdictCache(VerdictCacheRepo(self.engine))
        self.classifier_runner = ClassifierRunner(self.classifier_slots, self.verdict_cache)
        self.rescanner = Rescanner(
            HoldRepo(self.engine),
            self.store,
            delay=config.processing.rescan_delay,
            max_delay=config.processing.rescan_max_delay,
            give_up_after=config.processing.rescan_give_up_after,
        )
        as_cfg = config.appservice
        self.appservice = DurableAppService(
            server=str(config.homeserver.url).rstrip("/"),
            domain=config.homeserver.domain,
            as_token=as_cfg.as_token,
            hs_token=as_cfg.hs_token,
            bot_localpart=as_cfg.bot_localpart,
            id=as_cfg.id,
            on_transaction=self._on_transaction,
            limits=IntakeLimits(as_cfg.max_body_bytes, as_cfg.max_json_depth),
            monitor=IntakeMonitor(),
            audit_refusal=lambda txn_id, why: self.store.audit("intake", "refused", why),
        )
        self.bot_user_id = f"@{as_cfg.bot_localpart}:{config.homeserver.domain}"
        # /health and /metrics; `sandbox_restarts` is a running total of hashing-sandbox
        # workers killed and replaced (the sandbox's counter, wired where it is built).
        self.probes = OperatorEndpoints(
            config,
            self.store,
            self.metrics,
            self.appservice.monitor,
            RestartWindow(sandbox_restarts, config.health.sandbox_restart_window),
            started_at=self.started_at,
            queue_depth=lambda: self.queue.depth if self.queue else 0,
            protected_rooms=lambda: len(self.protected),
            ready=lambda: self.appservice.ready,
        )
        self.probes.add_routes(self.appservice.app)
        self.queue: WorkQueue | None = None
        self.hash_executor = hash_pool(config.processing.concurrency, config.processing.hash_nice)
        # Set in start(); typed as present because nothing uses them before.
        self.pipeline: Pipeline = None  # type: ignore[assignment]
        self.homeserver: Homeserver = None  # type: ignore[assignment]
        self.powers: PowerCache = None  # type: ignore[assignment]
        self.executor: Executor = None  # type: ignore[assignment]
        self.enforcer: Enforcer = None  # type: ignore[assignment]
        self.retention = RetentionRunner.for_config(config, self.engine, self.moderation.purge_incidents_before, self.store.audit)
        self.anchors: ChainAnchors = None  # type: ignore[assignment]
        self.action_retrier: ActionRetrier | None = None

    async def start(self) -> None:
        cfg = self.config
        await self.instance_lock.acquire()  # raises AlreadyRunning: nothing done yet
        await migrate(self.engine)
        await self._open_evidence()
        # What the first hash would pay for (lazy imports, ~1 s) is paid before the first
        # event, beside the rest of the start-up: the endpoint must not open later for it.
        warming = asyncio.get_running_loop().run_in_executor(self.hash_executor, warm_up)
        await self.refresh_allowlist()
        await self._load_overrides()
        for report in self.list_reports:
            msg = f"hash list {report.name}: {report.entries} entries from {report.path}"
            if report.errors:
                msg += f", {len(report.errors)} lines rejected (first: line {report.errors[0][0]}: {report.errors[0][1]})"
            log.info(msg)
            if report.errors:
                await self.store.audit("lists", "rejected_lines", msg)

        # The queue exists before the endpoint opens, so no transaction finds it missing;
        # its workers start only once everything they call is ready.
        self.queue = WorkQueue(
            self.store,
            self._process,
            self.metrics,
            concurrency=cfg.processing.concurrency,
            max_attempts=cfg.processing.max_attempts,
            retry_exceptions=(RetryLater,),
        )
        await self.appservice.start(cfg.appservice.bind_address, cfg.appservice.port)
        await self.probes.start_metrics_listener()
        self.homeserver = Homeserver(
            self.appservice.intent.api, self.bot_user_id, retries=cfg.processing.action_retries
        )
        await self._prepare_bot()
        # Now that the database and the management room are there: lists garbled while the
        # bot was down are held, audited and reported.
        await self.lists.check_history()
        self.powers = PowerCache(self.homeserver)
        fetcher = MediaFetcher(
            self.appservice.http_session,
            homeserver_url=str(cfg.homeserver.url),
            as_token=cfg.appservice.as_token,
            user_id=self.bot_user_id,
            max_bytes=cfg.processing.max_media_bytes,
            timeout=cfg.processing.download_timeout,
            pending_upload_wait=cfg.processing.pending_upload_wait,
            max_downloads=cfg.processing.max_downloads,
        )
        self.executor = executor = Executor(
            self.homeserver,
            self.store,
            self.metrics,
            protected_rooms=lambda: sorted(self.protected),
            management_room=lambda: self.management_room,
            retry_delay=cfg.processing.action_retry_delay,
            retry_max_delay=cfg.processing.action_retry_max_delay,
        )
        self.action_retrier = ActionRetrier(executor, self.store)
        self.enforcer = Enforcer(
            executor,
            self.store,
            self.moderation,
            homeserver_name=cfg.homeserver.domain,
            management_room=lambda: self.management_room,
        )
        await self.classifier_runner.start()
        self.pipeline = Pipeline(
            store=self.store,
            fetcher=fetcher,
            classifiers=self.classifier_runner,
            rescanner=self.rescanner,
            enforcer=self.enforcer,
            powers=self.powers,
            metrics=self.metrics,
            policy=lambda: self.policy,
            allowlist=lambda: self.allowlist,
            is_protected=lambda room_id: room_id in self.protected,
            bot_user_id=self.bot_user_id,
            max_image_pixels=cfg.processing.max_image_pixels,
            hash_executor=self.hash_executor,
            budget=EventBudget(
                max_refs=cfg.processing.max_refs_per_event,
                deadline=cfg.processing.event_deadline,
                fetch_concurrency=cfg.processing.fetch_concurrency,
            ),
            failures=MediaFailureMemory(expiry=cfg.processing.failure_memory),
        )
        await warming
        if cfg.processing.enabled:
            resumed = await self.queue.start()
            if resumed:
                log.info("resuming %d events left pending", resumed)
            self.rescanner.start(self.queue.submit)
            # Actions left pending (homeserver down), also by an earlier run, are retried.
            self.action_retrier.start(interval=min(5.0, max(0.2, cfg.processing.action_retry_delay / 2)))
        else:
            log.warning("processing is disabled: events are stored but not scanned")
        try:
            # The ping makes Synapse retry at once the transactions it was holding back.
            await self.homeserver.ping(cfg.appservice.id)
        except HomeserverError as e:
            log.warning("appservice ping failed (is the registration installed?): %s", e)
        self.retention.start()
        self.anchors.start(cfg.incidents.anchor_interval)
        self._start_retro()
        self.appservice.ready = True
        log.info("modbot ready as %s, protecting %d rooms", self.bot_user_id, len(self.protected))

    async def _open_evidence(self) -> None:
        """The incident chain's key and anchors (bot/record/evidence.py), before anything records an incident."""
        incidents = self.config.incidents
        try:
            key = await open_chain_key(incidents.chain_key_file, self.moderation)
        except ChainKeyError as e:
            await self.engine.dispose()  # nothing else is started yet: the process can exit
            raise ConfigError(f"{self.config_path or 'config'}: incidents.chain_key_file: {e}") from None
        self.anchors = ChainAnchors(
            self.moderation,
            AnchorFile(incidents.anchor_file),
            self.store,
            sender=lambda: self.homeserver,
            management_room=lambda: self.management_room,
        )
        self.moderation.use_chain_key(key, on_incident=self.anchors.incident_recorded)

    async def _prepare_bot(self) -> None:
        hs = self.homeserver
        assert hs is not None
        cfg = self.config
        await hs.register_bot(cfg.appservice.bot_localpart)
        try:
            await hs.set_displayname(cfg.appservice.bot_displayname)
        except HomeserverError as e:
            log.warning("could not set display name: %s", e)
        if not await hs.is_server_admin():
            log.warning(
                "%s is not a server admin: quarantine will fail. Run `modbot check` for how to fix it.",
                self.bot_user_id,
            )
        overrides = await self.moderation.protection_overrides()
        rooms = [r for r in cfg.rooms.protected if overrides.get(r, True)]
        rooms += [r for r, on in overrides.items() if on and r not in rooms]
        for room in rooms:
            room_id = await self._join(room)
            if room_id and overrides.get(room_id, True):
                self.protected.add(room_id)
        if cfg.rooms.management_room:
            self.management_room = await self._join(cfg.rooms.management_room)

    async def _join(self, room: str) -> str | None:
        assert self.homeserver is not None
        try:
            return await self.homeserver.join(room)
        except HomeserverError as e:
            log.error("could not join %s (invite %s first): %s", room, self.bot_user_id, e)
            await self.store.audit("rooms", "failed", f"could not join {room}: {e}", room_id=room)
            return None

    async def _on_transaction(self, txn_id: str, events: list[Any]) -> None:
        result = await self.store.store_transaction(txn_id, events, wanted=self._wanted)
        # "repeated": an id seen before; its events already stored are skipped, new ones
        # (Synapse numbering again from 1 after a restart) are queued like any others.
        self.metrics.transactions.labels("new" if result.new else "repeated").inc()
        self.metrics.events_received.labels("yes").inc(len(result.queued))
        self.metrics.events_received.labels("no").inc(len(events) - len(result.queued))
        for raw in events:
            if isinstance(raw, dict) and raw.get("type") in ("m.room.power_levels", "m.room.create"):
                if self.powers is not None and isinstance(raw.get("room_id"), str):
                    self.powers.invalidate(raw["room_id"])
        if self.queue is not None and self.config.processing.enabled:
            self.queue.submit(result.queued)

    def _wanted(self, event: dict[str, Any]) -> bool:
        return wants_processing(event) or self.commands.is_command(event)

    async def _process(self, event: Any) -> None:
        if self.commands.is_command(event.event):
            await self.commands.handle(event)
            await self.store.finish_event(event.event_id, "done")
            return
        await self.pipeline.process(event)

    # --- what moderators change at run time -------------------------------------------------

    async def refresh_allowlist(self) -> None:
        self.allowlist = Allowlist.of((a.hash_type, a.hash) for a in await self.moderation.allowlist())

    async def _load_overrides(self) -> None:
        settings = await self.moderation.settings("dry_run")
        self.dry_run_overrides = {(None if k == "dry_run" else k.split(":", 1)[1]): bool(v) for k, v in settings.items()}
        self.policy = with_dry_run(self.base_policy, self.dry_run_overrides)

    async def set_dry_run(self, on: bool, room_id: str | None, *, by: str) -> None:
        await self.moderation.set_setting("dry_run" if room_id is None else f"dry_run:{room_id}", on, by)
        await self.store.audit("policy", "dry_run", f"{by}: dry run {'on' if on else 'off'} {room_id or 'everywhere'}", room_id=room_id, sender=by)
        await self._load_overrides()

    async def reload_policy(self, *, by: str) -> tuple[bool, str]:
        """Re-read the policy from the config; an invalid one is refused and the old one kept."""
        if self.config_path is None:
            return False, "modbot was not started from a config file; nothing to reload"
        try:
            config = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as e:
            await self.store.audit("policy", "rejected", f"{by}: reload refused: {e}", sender=by)
            return False, f"The policy was not reloaded; the old one stays in force:\n{e}"
        self.base_policy = config.policy
        self.policy = with_dry_run(self.base_policy, self.dry_run_overrides)
        await self.store.audit("policy", "reloaded", f"{by}: policy reloaded ({len(config.policy.rules)} rules)", sender=by)
        return True, f"Policy reloaded: {len(config.policy.rules)} rules."

    async def reload_lists(self) -> ReloadResult:
        """Reload the lists whose file changed; a list that fails to load keeps its old version."""
        return await self.lists.reload()

    @property
    def list_reports(self) -> tuple[ListLoadReport, ...]:
        return self.lists.reports

    # --- retroactive matching --------------------------------------------------------------

    def _start_retro(self) -> None:
        cfg = self.config
        # Its own executor, whose audit rows say "retroactive"; same action keys, so an
        # action the pipeline already took is not taken again.
        executor = Executor(
            self.homeserver,
            RetroactiveAudit(self.engine, action_lease=cfg.processing.action_lease),
            self.metrics,
            protected_rooms=lambda: sorted(self.protected),
            management_room=lambda: self.management_room,
            retry_delay=cfg.processing.action_retry_delay,
            retry_max_delay=cfg.processing.action_retry_max_delay,
        )
        enforcer = Enforcer(
            executor, self.store, self.moderation,
            homeserver_name=cfg.homeserver.domain, management_room=lambda: self.management_room,
        )

        async def power(room_id: str, user_id: str) -> int:
            return (await self.powers.get(room_id)).of(user_id)

        self.retro = RetroMatcher(
            store=self.store,
            policy=lambda: self.policy,
            power=power,
            act=lambda decision, ctx, matched: enforcer.enforce(decision, ctx, matched, retroactive=True),
            is_protected=lambda room_id: room_id in self.protected,
            bot_user_id=self.bot_user_id,
            pdq_min_quality=cfg.hashlist.pdq_min_quality,
            allowlist=lambda: self.allowlist,
            classifier_name=self.hashlist.name,
        )
        # Lists may have gained entries while the bot was down; a held list's entries are
        # not the version to remember as seen.
        snapshot = self.lists.snapshot
        self._spawn_retro(self.retro.after_reload(snapshot, [s.name for s in snapshot.states if s.hold is None]))
        self.lists.start_watching(cfg.hashlist.reload_interval)

    async def _lists_reloaded(self, result: ReloadResult) -> None:
        for change in result.changes:
            outcome = change.outcome if change.outcome in ("kept", "held") else "reloaded"
            await self.store.audit("lists", outcome, change.describe())
            if outcome != "reloaded":
                await self._tell_management(f"Hash list {change.name} not reloaded", change.describe(), f"lists:{outcome}:{change.name}")
        if self.retro is not None and result.reloaded:
            self._spawn_retro(self.retro.after_reload(result))

    async def _tell_management(self, title: str, text: str, key: str) -> None:
        """A notice in the management room; a failure is logged and audited, never raised."""
        room = self.management_room
        if room is None or self.homeserver is None:
            return
        body, formatted = notice_text(title, [text])
        try:
            await self.homeserver.send_notice(room, body, formatted, txn_id_for(f"{key}:{time.time_ns()}"))
        except HomeserverError as e:
            log.warning("could not send a notice to %s: %s", room, e)
            await self.store.audit("notify", "failed", f"{title}: notice not sent: {e}", room_id=room)

    async def accept_list(self, name: str, *, by: str) -> None:
        """Accept a list file the bot itself has just edited, if it would be held (see listaccept)."""
        from .lists.accept import AcceptError, record_acceptance

        config = next(c for c in self.config.hash_lists if c.name == name)
        try:
            await record_acceptance(
                self.list_states, self.store, config, Path.cwd(),
                by=by, max_drop_share=self.config.hashlist.max_drop_share, only_if_held=True,
            )
        except AcceptError as e:  # a disabled or unreadable list: the reload that follows says so
            log.warning("%s", e)

    def _spawn_retro(self, run: Any) -> None:
        task = asyncio.create_task(run, name="retroactive-matching")
        self._retro_runs.add(task)
        task.add_done_callback(self._retro_runs.discard)

    async def protect_room(self, room: str, *, by: str) -> str:
        from .commands.runner import CommandError

        try:
            room_id = await self.homeserver.join(room)
        except HomeserverError as e:
            raise CommandError(f"cannot join {room} (invite {self.bot_user_id} first): {e}") from e
        await self.moderation.set_protected(room_id, True, by)
        self.protected.add(room_id)
        await self.store.audit("rooms", "protected", f"{by}: protect {room_id}", room_id=room_id, sender=by)
        return room_id

    async def unprotect_room(self, room: str, *, by: str) -> str:
        room_id = await self.homeserver.resolve_room(room)
        await self.moderation.set_protected(room_id, False, by)
        self.protected.discard(room_id)
        await self.store.audit("rooms", "unprotected", f"{by}: unprotect {room_id}", room_id=room_id, sender=by)
        return room_id


    async def stop(self) -> None:
        await self.lists.stop_watching()
        for task in list(self._retro_runs):
            task.cancel()
        await self.retention.stop()
        if self.anchors is not None:
            await self.anchors.stop()
        await self.rescanner.stop()
        if self.action_retrier is not None:
            await self.action_retrier.stop()
        if self.queue is not None:
            await self.queue.stop()
        await self.classifier_runner.close()
        await self.appservice.stop()
        await self.probes.stop()
        self.hash_executor.shutdown(wait=False, cancel_futures=True)
        await self.engine.dispose()
        # Last: until everything above has stopped, this process may still act.
        await self.instance_lock.release()


async def run(config: Config, config_path: str | Path | None = None) -> int:
    """Run until SIGINT/SIGTERM (exit status 0) or until the instance lock is lost (4).

    The instance lock is taken before anything else, so a second bot on the same database
    is refused at once (AlreadyRunning), before it loads lists or touches the database.
    """
    lock = instance_lock(config.database.url)
    await lock.acquire()
    stop = asyncio.Event()
    lock.on_lost(stop.set)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        bot = ModBot(config, config_path=config_path, lock=lock)
    except BaseException:
        await lock.release()
        raise
    await bot.start()  # if it fails, the process exits, and the lock goes with it
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await bot.stop()
    return EXIT_LOCK_LOST if lock.lost.is_set() else 0

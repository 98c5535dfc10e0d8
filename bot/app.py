"""Composition root: build every part from the config, start them in order, stop them
(the process around it, signals and the instance lock, is `modbot run`: bot/cli/run.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from .act.executor import Executor
from .act.uploadwatch import UploadWatch, upload_watch
from .act.retry import ActionRetrier
from .act.homeserver import Homeserver, HomeserverError
from .classify.base import ClassifierSetupError
from .classify.cache import VerdictCache
from .classify.hashlist import HashListClassifier
from .classify.registry import ClassifierRegistry, build_classifiers, effective_classifier_configs
from .classify.runner import ClassifierRunner
from .commands.context import BotStatus, CommandServices
from .commands.handlers import build_commands
from .commands.imagecrops import SandboxCrops
from .commands.parse import Addressing, event_command_tokens
from .commands.runner import CommandRunner
from .config import Config, ConfigError
from .controls import Controls
from .act.enforcer import Enforcer
from .record.evidence import AnchorFile, ChainAnchors, ChainKeyError, open_chain_key
from .extract import extract_media_refs
from .eventbudget import EventBudget
from .fetch import MediaFetcher
from .hashing.pool import HashSandbox
from .health import RestartWindow
from .intake.endpoint import DurableAppService, IntakeLimits
from .intake.monitor import IntakeMonitor
from .mediafailures import MediaFailureMemory
from .intake.queue import WorkQueue
from .intake.reports import ReportDesk, report_desk
from .lists.registry import ListRegistry, ReloadResult
from .metrics import Metrics
from .pipeline import Pipeline, PowerCache, RetryLater
from .policylists.wiring import PolicyListWiring
from .presendwiring import Presend
from .probes import OperatorEndpoints
from .record.db import create_engine, migrate
from .record.instance import InstanceLock, instance_lock
from .record.liststate import ListStateRepo
from .record.moderation import ModerationStore
from .record.retention import RetentionRunner
from .record.scanning import HoldRepo, VerdictCacheRepo
from .record.store import Store
from .intake.ping import Pinger
from .intake.rescan import Rescanner
from .retro import RETRO, RetroMatcher

log = logging.getLogger("modbot")
DATABASE_DRAIN_TIMEOUT = 5.0  # s stop() waits for the database thread's queue (ms each; then logged, abandoned)


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
    ) -> None:
        self.config = config
        # One bot per database (bot/record/instance.py): taken first thing in start(),
        # unless run() already took it before building the bot.
        self.instance_lock = lock or instance_lock(config.database.url)
        self.config_path = Path(config_path) if config_path else None
        self.metrics = Metrics()
        self.engine = create_engine(config.database.url)
        self.store = Store(self.engine, action_lease=config.processing.action_lease)
        self.moderation = ModerationStore(self.engine, runner=self.store.runner)
        self.management_room: str | None = None
        self.bot_user_id = f"@{config.appservice.bot_localpart}:{config.homeserver.domain}"
        # Commands are recognised as they arrive; they are run once the bot has started.
        self.addressing = Addressing(
            config.commands.prefix, self.bot_user_id, config.appservice.bot_localpart,
            config.appservice.bot_displayname,
        )
        self.commands: CommandRunner = None  # type: ignore[assignment]
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
        # What moderators change while the bot runs: protected rooms, dry run, allowlist, lists.
        self.controls = Controls(
            config, config_path=self.config_path, store=self.store, moderation=self.moderation,
            lists=self.lists, list_states=self.list_states, homeserver=lambda: self.homeserver,
            management_room=lambda: self.management_room, bot_user_id=self.bot_user_id,
        )
        self.policylists = PolicyListWiring(config, self.engine, self.store, self.controls, self.bot_user_id)
        self.retro: RetroMatcher | None = None
        self._retro_runs: set[asyncio.Task[object]] = set()
        self.pinger: Pinger | None = None
        # Every decode of media runs in its worker processes (started in start()).
        self.sandbox = HashSandbox.from_config(config.processing)
        # The configured classifiers (docs/classifiers.md), the hash lists' among them.
        try:
            self.classifier_slots = build_classifiers(
                effective_classifier_configs(config),
                ClassifierRegistry.discover(),
                list_source=self.lists,
                pdq_min_quality=config.hashlist.pdq_min_quality,
                base_dir=Path.cwd(), sandbox=self.sandbox,  # re-encoding for services decodes
            )
        except ClassifierSetupError as e:
            raise ConfigError(f"{config_path or 'config'}: {e}") from None
        self.classifiers = [slot.classifier for slot in self.classifier_slots]
        self.verdict_cache = VerdictCache(VerdictCacheRepo(self.engine))
        self.classifier_runner = ClassifierRunner(self.classifier_slots, self.verdict_cache)
        processing = config.processing
        self.rescanner = Rescanner(HoldRepo(self.engine), self.store, delay=processing.rescan_delay,
                                   max_delay=processing.rescan_max_delay, give_up_after=processing.rescan_give_up_after)
        as_cfg = config.appservice
        self.appservice = DurableAppService(
            server=str(config.homeserver.url).rstrip("/"), domain=config.homeserver.domain,
            as_token=as_cfg.as_token, hs_token=as_cfg.hs_token, bot_localpart=as_cfg.bot_localpart,
            id=as_cfg.id, on_transaction=self._on_transaction,
            limits=IntakeLimits(as_cfg.max_body_bytes, as_cfg.max_json_depth),
            monitor=IntakeMonitor(),
            audit_refusal=lambda txn_id, why: self.store.audit("intake", "refused", why),
        )
        # /health and /metrics; the sandbox's running total of workers killed and replaced
        # (a resource limit hit, a crash) feeds /health's restart window.
        self.probes = OperatorEndpoints(
            config, self.store, self.metrics, self.appservice.monitor,
            RestartWindow(lambda: self.sandbox.restarts, config.health.sandbox_restart_window),
            started_at=self.started_at,
            queue_depth=lambda: self.queue.depth if self.queue else 0,
            protected_rooms=lambda: len(self.controls.protected),
            ready=lambda: self.appservice.ready,
        )
        self.probes.add_routes(self.appservice.app)
        # Synapse's check_event_for_spam (synapse-http-antispam), bot/presend.py, on this HTTP server.
        self.presend = Presend(config, self.engine, self.store, self.appservice.app) if config.presend.enabled else None
        self.queue: WorkQueue | None = None
        # Set in start(); typed as present because nothing uses them before.
        self.pipeline: Pipeline = None  # type: ignore[assignment]
        self.homeserver: Homeserver = None  # type: ignore[assignment]
        self.powers: PowerCache = None  # type: ignore[assignment]
        self.executor: Executor = None  # type: ignore[assignment]
        self.enforcer: Enforcer = None  # type: ignore[assignment]
        self.retention = RetentionRunner.for_config(
            config, self.engine, self.moderation.purge_incidents_before, self.store.audit
        )
        self.anchors: ChainAnchors = None  # type: ignore[assignment]
        self.reports: ReportDesk | None = None
        self.uploads: UploadWatch | None = None  # suspended users' uploads (bot/act/uploadwatch.py)
        self.action_retrier: ActionRetrier | None = None

    async def start(self) -> None:
        cfg = self.config
        await self.instance_lock.acquire()  # raises AlreadyRunning: nothing done yet
        await migrate(self.engine)
        await self._open_evidence()
        # The hashing workers start (~1 s: the fork server imports the hashing modules)
        # beside the rest of the start-up: the endpoint must not open later for it.
        warming = asyncio.create_task(self.sandbox.start())
        await self.controls.restore()
        await self.policylists.load()
        for report in self.lists.reports:
            msg = f"hash list {report.name}: {report.entries} entries from {report.path}"
            if report.errors:
                (line, why), count = report.errors[0], len(report.errors)
                msg += f", {count} lines rejected (first: line {line}: {why})"
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
            self.appservice.http_session, homeserver_url=str(cfg.homeserver.url), as_token=cfg.appservice.as_token,
            user_id=self.bot_user_id, max_bytes=cfg.processing.max_media_bytes, timeout=cfg.processing.download_timeout,
            pending_upload_wait=cfg.processing.pending_upload_wait, max_downloads=cfg.processing.max_downloads,
        )
        self.executor = executor = self._executor(self.store)
        self.action_retrier = ActionRetrier(executor, self.store)
        await self.policylists.start(executor, self.homeserver, lambda: self.management_room)
        self.enforcer = Enforcer(executor, self.store, self.moderation, homeserver_name=cfg.homeserver.domain,
                                 management_room=lambda: self.management_room)
        await self.classifier_runner.start()
        self.pipeline = Pipeline(
            store=self.store,
            fetcher=fetcher,
            classifiers=self.classifier_runner,
            rescanner=self.rescanner,
            enforcer=self.enforcer,
            powers=self.powers,
            metrics=self.metrics,
            policy=lambda: self.controls.policy,
            allowlist=lambda: self.controls.allowlist,
            is_protected=self.controls.is_protected,
            bot_user_id=self.bot_user_id,
            max_image_pixels=cfg.processing.max_image_pixels,
            sandbox=self.sandbox,
            budget=EventBudget(
                max_refs=cfg.processing.max_refs_per_event,
                deadline=cfg.processing.event_deadline,
                fetch_concurrency=cfg.processing.fetch_concurrency,
            ),
            failures=MediaFailureMemory(expiry=cfg.processing.failure_memory),
        )
        self.reports = report_desk(self, cfg.reports)  # users' reports, polled once processing starts
        self.commands = CommandRunner(
            self._command_services(), build_commands(), addressing=self.addressing,
            management_power=cfg.commands.management_power,
            refusal_reply_interval=cfg.commands.refusal_reply_interval,
        )
        await warming
        if self.presend is not None:
            self.presend.start(
                pipeline=self.pipeline, session=self.appservice.http_session, powers=self.powers,
                controls=self.controls, bot_user_id=self.bot_user_id, submit=self.queue.submit,
                rules=self.policylists.lists.index, management_room=lambda: self.management_room,
            )
        if cfg.processing.enabled:
            resumed = await self.queue.start()
            if resumed:
                log.info("resuming %d events left pending", resumed)
            self.rescanner.start(self.queue.submit)
            # Actions left pending (homeserver down), also by an earlier run, are retried.
            self.action_retrier.start(interval=min(5.0, max(0.2, cfg.processing.action_retry_delay / 2)))
            if cfg.reports.enabled:
                self.reports.start()
            if cfg.suspended_uploads.enabled:
                self.uploads = upload_watch(self.homeserver, executor, self.store, cfg.suspended_uploads, own_server=cfg.homeserver.domain)
                self.uploads.start()
        else:
            log.warning("processing is disabled: events are stored but not scanned")
        # Synapse retries at once what it held back while modbot was down (bot/intake/ping.py).
        self.pinger = Pinger(lambda: self.homeserver.ping(cfg.appservice.id), (HomeserverError,))
        await self.pinger.start()
        self.retention.start()
        self.anchors.start(cfg.incidents.anchor_interval)
        self._start_retro()
        self.appservice.ready = True
        log.info("modbot ready as %s, protecting %d rooms", self.bot_user_id, len(self.controls.protected))

    def _executor(self, store: Store) -> Executor:
        processing = self.config.processing
        return Executor(
            self.homeserver, store, self.metrics, protected_rooms=lambda: sorted(self.controls.protected),
            management_room=lambda: self.management_room, retry_delay=processing.action_retry_delay,
            retry_max_delay=processing.action_retry_max_delay,
        )

    def _command_services(self) -> CommandServices:
        """What command handlers may use (bot/commands/context.py): never the bot itself."""
        status = BotStatus(
            self.started_at, queue_depth=lambda: self.queue.depth if self.queue else 0,
            recent_errors=lambda: self.queue.last_errors if self.queue else [], classifiers=self.classifiers,
            presend=(lambda: self.presend.counts.since_start) if self.presend else None,
        )
        return CommandServices(
            prefix=self.config.commands.prefix, bot_user_id=self.bot_user_id, management_room=self.management_room,
            store=self.store, moderation=self.moderation, homeserver=self.homeserver, powers=self.powers,
            executor=self.executor, enforcer=self.enforcer, anchors=self.anchors, controls=self.controls,
            media=self.pipeline, hash_lists=self.config.hash_lists, status=status, policylists=self.policylists.lists,
            reports=self.reports, crops=SandboxCrops(self.pipeline.fetcher, self.sandbox),
        )

    @property
    def protected(self) -> set[str]:  # the protected rooms, kept by the controls
        return self.controls.protected

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
        self.moderation.use_chain_key(key, on_incident=self.policylists.after(self.anchors.incident_recorded))

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
        await self.controls.join_protected()
        if cfg.rooms.management_room:
            self.management_room = await self.controls.join(cfg.rooms.management_room)

    async def _on_transaction(self, txn_id: str, events: list[Any]) -> None:
        # The media table is read for the new events' media in the same trip (record/events.py).
        ready = self.pipeline is not None
        result = await self.store.store_transaction(
            txn_id, events, wanted=self._wanted, media_of=self._media_of if ready else None,
            forgotten=self.pipeline.recent.forgotten if ready else 0,
        )
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

    def _media_of(self, event: dict[str, Any]) -> list[str]:
        return [r.mxc for r in extract_media_refs(event, max_refs=self.pipeline.budget.max_refs).refs if not r.encrypted]

    def _wanted(self, event: dict[str, Any]) -> bool:
        wanted = wants_processing(event) or self.policylists.wants(event)  # policy rules, joins to check
        return wanted or event_command_tokens(event, self.addressing) is not None

    async def _process(self, event: Any) -> None:
        if event.presend is None and self.commands.is_command(event.event):  # a blocked one was never sent
            await self.commands.handle(event)
        elif not await self.policylists.handle(event):  # policy rules, joins, media taken down by a list
            return await self.pipeline.process(event)
        await self.store.finish_event(event.event_id, "done")

    # --- retroactive matching --------------------------------------------------------------

    def _start_retro(self) -> None:
        cfg = self.config
        # Its own executor, whose audit rows say "retroactive"; same action keys, so an
        # action the pipeline already took is not taken again. The same database thread.
        store = Store(self.engine, action_lease=cfg.processing.action_lease, audit_source=RETRO, runner=self.store.runner)
        executor = self._executor(store)
        enforcer = Enforcer(
            executor, self.store, self.moderation,
            homeserver_name=cfg.homeserver.domain, management_room=lambda: self.management_room,
        )

        async def power(room_id: str, user_id: str) -> int:
            return (await self.powers.get(room_id)).of(user_id)

        self.retro = RetroMatcher(
            store=self.store,
            policy=lambda: self.controls.policy,
            power=power,
            act=lambda decision, ctx, matched: enforcer.enforce(decision, ctx, matched, retroactive=True),
            is_protected=self.controls.is_protected,
            bot_user_id=self.bot_user_id,
            # The live hash-list classifiers, each list matched by those that match it live,
            # with their floors (own `settings.pdq_min_quality`, else hashlist.pdq_min_quality)
            # and names: an entry found later matches what it would have then.
            # None when every hash-list classifier is disabled: what is not matched live is not
            # matched retroactively either.
            classifiers=[c for c in self.classifiers if isinstance(c, HashListClassifier)],
            allowlist=lambda: self.controls.allowlist,
        )
        # Lists may have gained entries while the bot was down; a held list's entries are
        # not the version to remember as seen.
        snapshot = self.lists.snapshot
        self._spawn_retro(self.retro.after_reload(snapshot, [s.name for s in snapshot.states if s.hold is None]))
        self.lists.start_watching(cfg.hashlist.reload_interval)

    async def _lists_reloaded(self, result: ReloadResult) -> None:
        await self.controls.report_reload(result)
        if self.retro is not None and result.reloaded:
            self._spawn_retro(self.retro.after_reload(result))

    def _spawn_retro(self, run: Any) -> None:
        task = asyncio.create_task(run, name="retroactive-matching")
        self._retro_runs.add(task)
        task.add_done_callback(self._retro_runs.discard)

    async def stop(self) -> None:
        await self.lists.stop_watching()
        await self.policylists.stop()
        for task in list(self._retro_runs):
            task.cancel()
        if self.pinger is not None:
            await self.pinger.stop()
        await self.retention.stop()
        if self.anchors is not None:
            await self.anchors.stop()
        await self.rescanner.stop()
        if self.reports is not None:
            await self.reports.stop()
        if self.uploads is not None:
            await self.uploads.stop()
        if self.action_retrier is not None:
            await self.action_retrier.stop()
        if self.presend is not None:
            await self.presend.stop()
        if self.queue is not None:
            await self.queue.stop()
        await self.classifier_runner.close()
        await self.appservice.stop()
        await self.probes.stop()
        await self.sandbox.stop()  # kills busy workers too: stopping never waits for a hash
        await self.store.runner.drain(DATABASE_DRAIN_TIMEOUT)  # what was handed over commits before the lock goes
        await self.engine.dispose()
        # Last: until everything above has stopped, this process may still act.
        await self.instance_lock.release()


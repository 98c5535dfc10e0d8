"""Prometheus metrics, in one registry owned by the running bot."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_received = Counter(
            "modbot_events_received", "Events received from the homeserver", ["queued"], registry=r
        )
        self.transactions = Counter(
            "modbot_transactions", "Appservice transactions by outcome", ["outcome"], registry=r
        )
        self.media_scanned = Counter(
            "modbot_media_scanned", "Media items by scan outcome", ["outcome"], registry=r
        )
        self.media_repeats = Counter(
            "modbot_media_repeats", "Media hashed before under another mxc, answered from memory", registry=r
        )
        self.matches = Counter(
            "modbot_matches", "Matches by list, label and kind", ["list", "label", "kind"], registry=r
        )
        self.actions = Counter(
            "modbot_actions", "Actions by kind and outcome", ["kind", "outcome"], registry=r
        )
        self.classifier_scans = Counter(
            "modbot_classifier_scans",
            "Scans by classifier and outcome (match, no_match, error, skipped, cached)",
            ["classifier", "outcome"],
            registry=r,
        )
        self.queue_depth = Gauge("modbot_queue_depth", "Events waiting to be processed", registry=r)
        self.scan_seconds = Histogram(
            "modbot_scan_seconds", "Download, hash and classify one media item", buckets=LATENCY_BUCKETS, registry=r
        )
        self.end_to_end_seconds = Histogram(
            "modbot_end_to_end_seconds",
            "From the event's origin_server_ts to the end of its processing",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

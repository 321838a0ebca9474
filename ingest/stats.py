"""Ingest counters: a Prometheus registry for scraping and interval totals for the ingest_stats table."""

from __future__ import annotations

import time
from collections import Counter as Tally
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from storage.ingest import StatsRow


@dataclass
class Interval:
    """Totals since the last time they were written to the database."""

    started: float = field(default_factory=time.monotonic)
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    by_reason: Tally[str] = field(default_factory=Tally)
    batches: int = 0
    commit_seconds: float = 0.0
    lag_seconds: float | None = None


class IngestStats:
    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("lykta_ingest_messages_received", "MQTT messages received", registry=r)
        self.stored = Counter("lykta_ingest_readings_stored", "readings committed to the telemetry table", registry=r)
        self.duplicates = Counter(
            "lykta_ingest_readings_duplicate", "readings dropped because they were already stored", registry=r
        )
        self.rejected = Counter(
            "lykta_ingest_messages_rejected",
            "messages dead-lettered, by reason",
            labelnames=("reason",),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "lykta_ingest_batch_messages",
            "messages per committed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.commit_latency = Histogram(
            "lykta_ingest_commit_seconds",
            "time to write and commit one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.backlog = Gauge("lykta_ingest_backlog_messages", "messages received but not yet committed", registry=r)
        self.broker_up = Gauge("lykta_ingest_broker_connected", "1 while connected to the broker", registry=r)
        self.database_up = Gauge("lykta_ingest_database_connected", "1 while the database answers", registry=r)
        self.interval = Interval()

    def on_received(self, n: int = 1) -> None:
        self.received.inc(n)
        self.interval.received += n

    def on_batch(
        self, messages: int, *, stored: int, duplicates: int, reasons: list[str], seconds: float, lag: float
    ) -> None:
        self.batch_size.observe(messages)
        self.commit_latency.observe(seconds)
        self.stored.inc(stored)
        self.duplicates.inc(duplicates)
        for reason in reasons:
            self.rejected.labels(reason=reason).inc()
        i = self.interval
        i.stored += stored
        i.duplicates += duplicates
        i.rejected += len(reasons)
        i.by_reason.update(reasons)
        i.batches += 1
        i.commit_seconds += seconds
        i.lag_seconds = lag if i.lag_seconds is None else max(i.lag_seconds, lag)

    def take(self, backlog: int) -> StatsRow:
        """The interval's totals as a row, starting a new interval."""
        i, self.interval = self.interval, Interval()
        return StatsRow(
            instance=self.instance,
            interval_s=max(time.monotonic() - i.started, 1e-3),
            received=i.received,
            stored=i.stored,
            duplicates=i.duplicates,
            rejected=i.rejected,
            rejected_by_reason=dict(i.by_reason),
            batches=i.batches,
            commit_seconds=i.commit_seconds,
            backlog=backlog,
            lag_seconds=i.lag_seconds,
        )

    def restore(self, row: StatsRow) -> None:
        """Put back totals that could not be written, so the next row carries them."""
        i = self.interval
        i.received += row.received
        i.stored += row.stored
        i.duplicates += row.duplicates
        i.rejected += row.rejected
        i.by_reason.update(row.rejected_by_reason)
        i.batches += row.batches
        i.commit_seconds += row.commit_seconds
        i.started -= row.interval_s

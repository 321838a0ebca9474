"""Each device's own rhythm, learned from its history: how often it measures and how often it is heard.

Silence is judged against what a device really does, not what the inventory says it should: a lamp
controller declared at 600 s may report every 900 s, a gateway may deliver a quarter of an hour's readings at
once. The median gap (robust to the outages it is meant to find) over the last ``SPAN_S`` of device time,
learned again once evaluation has moved on by ``RELEARN_S``; a device with too little history keeps its
declared interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from storage import rules as store
from storage.rules import RuleAsset

SPAN_S = 6 * 3600.0
RELEARN_S = 3600.0


class Cadence:
    """Learned intervals of the devices of one evaluator (the live service keeps one per process and shard)."""

    def __init__(self) -> None:
        self.learned_at: float | None = None
        self.known: dict[int, tuple[float, float | None]] = {}

    def refresh(self, conn: psycopg.Connection, device_keys: Sequence[int] | None, t: float) -> None:
        """Learn again from the ``SPAN_S`` before ``t`` when the last learning is ``RELEARN_S`` old (or ahead)."""
        if self.learned_at is not None and 0 <= t - self.learned_at < RELEARN_S:
            return
        self.known = store.learn_cadence(conn, device_keys, t - SPAN_S, t)
        self.learned_at = t

    def measures(self, asset: RuleAsset) -> float:
        """Seconds between the device's readings (device time): learned, else declared."""
        learned = self.known.get(asset.key())
        return learned[0] if learned else asset.interval()

    def heard(self, asset: RuleAsset) -> float:
        """Seconds between the moments its readings arrive: at least how often it measures."""
        learned = self.known.get(asset.key())
        delivered = learned[1] if learned else None
        return max(self.measures(asset), delivered or 0.0)

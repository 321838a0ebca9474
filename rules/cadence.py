"""Each device's own rhythm, learned from its history: how often it measures and how often it is heard.

Silence is judged against what a device really does, not what the inventory says it should: a lamp
controller declared at 600 s may report every 900 s, a gateway may deliver a quarter of an hour's readings at
once. The gap nine in ten of its gaps stay within (robust to the outages it is meant to find, and to devices
that measure in bursts) over the last ``SPAN_S`` of device time, learned again at every multiple of ``RELEARN_S`` of device time; a device with too little history keeps its
declared interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import psycopg

from storage import rules as store
from storage.rules import RuleAsset

SPAN_S = 6 * 3600.0
RELEARN_S = 6 * 3600.0
"""Learned again at 00, 06, 12 and 18 UTC of device time (a day divides into such parts)."""


class Cadence:
    """Learned intervals of the devices of one evaluator (the live service keeps one per process and shard)."""

    def __init__(self) -> None:
        self.learned_at: float | None = None
        self.known: dict[int, tuple[float, float | None]] = {}

    def refresh(self, conn: psycopg.Connection, device_keys: Sequence[int] | None, t: float) -> None:
        """What was learned at the last full ``RELEARN_S`` at or before ``t``, from the ``SPAN_S`` before it:
        the same for every evaluation within that hour, however a period is cut into steps."""
        at = math.floor(t / RELEARN_S) * RELEARN_S
        if self.learned_at == at:
            return
        self.known = store.learn_cadence(conn, device_keys, at - SPAN_S, at)
        self.learned_at = at

    def measures(self, asset: RuleAsset) -> float:
        """Seconds between the device's readings (device time): learned, else declared."""
        learned = self.known.get(asset.key())
        return learned[0] if learned else asset.interval()

    def heard(self, asset: RuleAsset) -> float:
        """Seconds between the moments its readings arrive: at least how often it measures."""
        learned = self.known.get(asset.key())
        delivered = learned[1] if learned else None
        return max(self.measures(asset), delivered or 0.0)

"""Each device's own rhythm, learned from its history: how often it measures and how often it is heard.

Silence is judged against what a device really does, not what the inventory says it should: a lamp
controller declared at 600 s may report every 900 s, a gateway may deliver a quarter of an hour's readings at
once. The gap nine in ten of its gaps stay within (robust to the outages it is meant to find, and to devices
that measure in bursts) over the last ``SPAN_S`` of device time, learned again at every multiple of
``RELEARN_S`` of device time; a device with too little history keeps its declared interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import psycopg

from storage import rules as store
from storage.rules import RuleAsset

SPAN_S = 6 * 3600.0
RELEARN_S = 6 * 3600.0
"""Learned again at 00, 06, 12 and 18 UTC of device time (a day divides into such parts)."""


MIN_GAPS = 4


class Cadence:
    """Learned intervals of the devices of one evaluator, and each device's last reading (the live service
    keeps one per process and shard, so a cycle need not look either up again)."""

    def __init__(self) -> None:
        self.learned_at: float | None = None
        self.known: dict[int, tuple[float, float | None]] = {}
        self.book: pd.DataFrame | None = None
        """(device_key, t, received) of the readings of the last ``SPAN_S`` (device time)"""
        self.covered = 0.0
        self.last: dict[int, tuple[float, float]] = {}
        """(device time, receive time) of each device's last reading evaluated"""

    def refresh(self, conn: psycopg.Connection, device_keys: Sequence[int] | None, t: float) -> None:
        """What was learned at the last multiple of ``RELEARN_S`` at or before ``t``, from the ``SPAN_S``
        before it: the same for every evaluation until the next, however a period is cut into steps. The
        readings are read from the database once; evaluations add theirs (:meth:`observe`)."""
        at = math.floor(t / RELEARN_S) * RELEARN_S
        if self.book is None:
            self.book = store.reading_times_frame(conn, device_keys, at - SPAN_S, t)
            self.covered = t
        if self.learned_at == at:
            return
        self.book = self.book[self.book["t"] > at - SPAN_S]
        self.known = learn(self.book[self.book["t"] <= at])
        self.learned_at = at

    def observe(self, seen: dict[int, list[tuple[float, float]]], t1: float) -> None:
        """Add an evaluation's readings up to ``t1`` (device time) that the book does not hold yet."""
        if self.book is None or t1 <= self.covered:
            return
        rows = [(k, t, r) for k, times in seen.items() for t, r in times if t > self.covered]
        if rows:
            new = pd.DataFrame(rows, columns=["device_key", "t", "received"])
            self.book = pd.concat([self.book, new], ignore_index=True) if len(self.book) else new
        self.covered = t1

    def forget(self, device_keys: Sequence[int]) -> None:
        """Devices whose history changed behind the evaluation (late data): their last reading is read again."""
        for key in device_keys:
            self.last.pop(key, None)

    def measures(self, asset: RuleAsset) -> float:
        """Seconds between the device's readings (device time): learned, else declared."""
        learned = self.known.get(asset.key())
        return learned[0] if learned else asset.interval()

    def heard(self, asset: RuleAsset) -> float:
        """Seconds between the moments its readings arrive: at least how often it measures."""
        learned = self.known.get(asset.key())
        delivered = learned[1] if learned else None
        return max(self.measures(asset), delivered or 0.0)


def learn(book: pd.DataFrame) -> dict[int, tuple[float, float | None]]:
    """Per device: the gap nine in ten of its gaps stay within, between its device times (how often it
    measures; a device measuring in bursts, three readings a minute apart every quarter hour, has a quarter
    hour's rhythm) and between the distinct seconds its readings arrived in (how often it is heard: a gateway
    that batches), each from at least ``MIN_GAPS`` gaps; the second None where there are too few (history
    stored at once)."""
    if book.empty:
        return {}

    def rhythm(column: str) -> pd.Series:
        times = book[["device_key", column]].copy()
        times[column] = times[column].round(0) if column == "received" else times[column]
        times = times.drop_duplicates().sort_values(["device_key", column])
        gaps = times.groupby("device_key")[column].diff()
        keyed = pd.DataFrame({"device_key": times["device_key"], "gap": gaps})
        keyed = keyed[keyed["gap"] > 0]
        grouped = keyed.groupby("device_key")["gap"]
        quantile: pd.Series = grouped.quantile(0.9)[grouped.size() >= MIN_GAPS]
        return quantile

    measured = rhythm("t")
    heard = rhythm("received").reindex(measured.index)
    return {
        int(k): (float(m), None if pd.isna(h) else float(h))
        for k, m, h in zip(measured.index, measured.to_numpy(), heard.to_numpy(), strict=True)
    }

"""Each lamp's own switching, learned from its history, instead of an assumed twilight.

Real lamps switch by photocell, each at its own sun elevation (a few degrees either side of -3.5 degrees), or by a
schedule the municipality chose (a clock time), and photocells age. From every change of ``lamp_on`` in the
last ``KEEP_S`` (the moment between the two readings that saw it), lykta learns per lamp:

- the sun's elevation at its switch-ons and switch-offs (medians: robust to a missed reading or a fault),
  and the same as times of day; when the times of day explain its switching with less than half the
  spread (in minutes) and the sun does not (its elevations spread more than the sun moves between two of its
  reports), it follows a clock, otherwise the sun;
- a lamp with too few switches of its own (new, or only just switching at midsummer) is judged by its
  circuit when at least ``MIN_CIRCUIT`` of the circuit's lamps are learned (see :func:`borrowed`); otherwise
  civil twilight;
- its drift: how far the elevation of its switches in the last ``RECENT_S`` lies from its circuit's usual one,
  beyond what its reporting interval blurs (half the sun's movement between the two readings that saw a
  switch): a failing photocell switches ever earlier or later than its neighbours.

The detectors read the result as columns of the asset table (``COLUMNS``). The live service keeps one
:class:`Switching` per process and shard, fed with every cycle's readings; stored history (backtests, the
demo's week) keeps its own, fed in device-time order, so both learn the same from the same readings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd
import psycopg

from floor.sun import elevation_deg
from storage import rules as store
from storage.rules import RuleAsset


class AssetTable(Protocol):
    """What switching needs of an evaluation's assets (rules.evaluate.AssetTable)."""

    table: pd.DataFrame
    by_key: dict[int, int]
    rows: list[RuleAsset]
    refs: list[str]
    parents: dict[str, str | None]


KEEP_S = 5 * 86400.0
RECENT_S = 3 * 86400.0
MAX_GAP_S = 1800.0
"""Two readings further apart than this say a lamp switched, not when."""
MIN_EVENTS = 3
MIN_CIRCUIT = 3
COLUMNS = ["on_deg", "off_deg", "on_s", "off_s", "by_clock", "drift_deg"]
"""on_deg/off_deg: sun elevation of its switch-on/-off; on_s/off_s: the same as seconds of the UTC day;
by_clock: it follows a schedule; drift_deg: how far its recent switching lies from its circuit's."""
DAY_S = 86400.0
LEARNS_SWITCHING = frozenset({"lamp_failure", "day_burner", "switching_drift"})
"""Detectors that judge a lamp by its learned switching."""


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "device_key": pd.Series(dtype="int64"),
            "before": pd.Series(dtype=float),
            "t": pd.Series(dtype=float),
            "on": pd.Series(dtype=bool),
        }
    )


def events_in(frame: pd.DataFrame, after: float) -> pd.DataFrame:
    """The changes of ``lamp_on`` in a frame of readings (``device_key, t, metric, value``) whose later reading
    is after ``after`` (a change belongs to the evaluation that holds its later reading)."""
    sub = frame[frame["metric"] == "lamp_on"]
    if sub.empty:
        return _empty()
    sub = sub.drop_duplicates(["device_key", "t"]).sort_values(["device_key", "t"])
    keys = sub["device_key"].to_numpy(dtype=np.int64)
    t = sub["t"].to_numpy(dtype=float)
    on = sub["value"].to_numpy(dtype=float) > 0.5
    same = np.r_[False, keys[1:] == keys[:-1]]
    before = np.r_[np.nan, t[:-1]]
    change = same & (on != np.r_[False, on[:-1]]) & (t - before <= MAX_GAP_S) & (t > after)
    return pd.DataFrame({"device_key": keys[change], "before": before[change], "t": t[change], "on": on[change]})


class Switching:
    """The switches of the last ``KEEP_S`` of one evaluator's lamps, and what they say."""

    def __init__(self) -> None:
        self.book = _empty()
        self.upto: float | None = None
        self.learned_at: float | None = None
        self.learned = pd.DataFrame(columns=COLUMNS)
        self.circuits = pd.DataFrame(columns=["on", "off"])

    def seed(self, conn: psycopg.Connection, device_keys: Sequence[int] | None, t: float) -> None:
        """The first time: the switches stored up to ``t`` (only the changes leave the database)."""
        if self.upto is None:
            self.book = store.switch_events(conn, device_keys, t - KEEP_S, t, MAX_GAP_S)
            self.upto = t

    def observe(self, frame: pd.DataFrame, after: float) -> None:
        """Add the switches in an evaluation's readings (those whose later reading is after ``after``)."""
        new = events_in(frame, after)
        if new.empty:
            return
        book = pd.concat([self.book, new], ignore_index=True) if not self.book.empty else new
        latest = float(book["t"].max())
        book = book.drop_duplicates(["device_key", "t"])
        self.book = book[book["t"] > latest - KEEP_S]
        self.upto = max(self.upto or latest, latest)

    def annotate(self, assets: AssetTable, t: float) -> None:
        """Write :data:`COLUMNS` into ``assets.table``: what the switches before the UTC day of ``t`` say.
        Learned once a day, so an evaluation's result does not depend on how its period was cut into steps."""
        day = float(np.floor(t / DAY_S) * DAY_S)
        if self.learned_at != day:
            self.learned, self.circuits = self._learn(assets, day)
            self.learned_at = day
        table = assets.table
        keys = pd.Series([a.device_key for a in assets.rows], index=table.index)
        mine = self.learned.reindex(keys.to_numpy())
        mine.index = table.index
        circuit = pd.Series([assets.parents.get(r) for r in assets.refs], index=table.index)
        alone = mine["on_deg"].isna() & (table["kind"] == "streetlight") & circuit.isin(self.circuits.index)
        if alone.any():
            mine.loc[alone, "on_deg"] = circuit[alone].map(self.circuits["on"]).to_numpy()
            mine.loc[alone, "off_deg"] = circuit[alone].map(self.circuits["off"]).to_numpy()
        for column in COLUMNS:
            table[column] = mine[column].fillna(False).astype(bool) if column == "by_clock" else mine[column]

    def _learn(self, assets: AssetTable, now: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(per device key: COLUMNS; per circuit ref: median on/off elevation of its lamps that follow the sun)."""
        book = self.book[(self.book["t"] > now - KEEP_S) & (self.book["t"] <= now)]
        codes = book["device_key"].map(assets.by_key)
        book = book[codes.notna()]
        none = (pd.DataFrame(columns=COLUMNS), pd.DataFrame(columns=["on", "off"]))
        if book.empty:
            return none
        table = assets.table.copy()
        table["circuit"] = [assets.parents.get(r) for r in assets.refs]
        learned = learn(book.assign(code=codes[codes.notna()].astype(np.int64)), table, now)
        if learned.empty:
            return none
        circuits = pd.DataFrame(
            {
                "circuit": table["circuit"].reindex(learned.index),
                "on": learned["on_deg"],
                "off": learned["off_deg"],
                "own": learned["own"],
            }
        ).query("own")
        sizes = circuits.groupby("circuit").size()
        learned.index = pd.Index([assets.rows[c].device_key for c in learned.index])
        return learned[COLUMNS], borrowed(circuits)[sizes >= MIN_CIRCUIT]


def borrowed(circuits: pd.DataFrame) -> pd.DataFrame:
    """Per circuit (``circuits``: one row per lamp that follows the sun, columns circuit, on, off): the switching
    a lamp of it without enough switches of its own is judged by. Nothing says where in the circuit's spread its
    photocell lies, so it is meant to burn only when nearly every lamp of the circuit would (the tenth
    percentile of their switch-on elevations) and meant to be off only when nearly every lamp would be (the
    ninetieth of their switch-offs): at midsummer a lamp set lower than most of its circuit never switches on,
    and that is no lamp failure."""
    grouped = circuits.groupby("circuit")
    return pd.DataFrame({"on": grouped["on"].quantile(0.1), "off": grouped["off"].quantile(0.9)})


def _circular(seconds: pd.Series, groups: list[pd.Series]) -> tuple[pd.Series, pd.Series]:
    """Median time of day and median absolute deviation (seconds) per group, across midnight."""
    ref = seconds.groupby(groups).transform("first")
    offset = (seconds - ref + DAY_S / 2) % DAY_S - DAY_S / 2
    middle = offset.groupby(groups).transform("median")
    spread = (offset - middle).abs().groupby(groups).median()
    return ((ref + middle) % DAY_S).groupby(groups).first(), spread


def nights(book: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The first switch-on and the last switch-off of each lamp in each night (local solar noon to noon)."""
    lon = table["lon"].reindex(book["code"]).fillna(0.0).to_numpy(dtype=float)
    night = np.floor((book["t"].to_numpy(dtype=float) + lon / 15 * 3600 - DAY_S / 2) / DAY_S)
    keyed = book.assign(night=night).sort_values("t")
    first_on = keyed[keyed["on"]].drop_duplicates(["code", "night"], keep="first")
    last_off = keyed[~keyed["on"]].drop_duplicates(["code", "night"], keep="last")
    return pd.concat([first_on, last_off], ignore_index=True)


def learn(book: pd.DataFrame, table: pd.DataFrame, now: float) -> pd.DataFrame:
    """Per asset code (``book.code``): :data:`COLUMNS` from its switches (see the module doc).

    Of each night (local solar noon to noon) only a lamp's first switch-on and last switch-off count: a lamp
    that cycles through the night, or burns through a day, says nothing about when it is meant to switch.
    """
    book = nights(book, table)
    mid = ((book["before"] + book["t"]) / 2).to_numpy(dtype=float)
    lat = table["lat"].reindex(book["code"]).to_numpy(dtype=float)
    lon = table["lon"].reindex(book["code"]).to_numpy(dtype=float)
    frame = pd.DataFrame(
        {
            "code": book["code"].to_numpy(),
            "on": book["on"].to_numpy(dtype=bool),
            "elev": elevation_deg(lat, lon, mid),
            # degrees per minute the sun moves then: turns a spread in degrees into minutes
            "rate": np.abs(elevation_deg(lat, lon, mid + 300) - elevation_deg(lat, lon, mid - 300)) / 10,
            # how far the sun moved between the two readings that saw the switch: what its time cannot tell
            "blur": np.abs(
                elevation_deg(lat, lon, book["t"].to_numpy(dtype=float))
                - elevation_deg(lat, lon, book["before"].to_numpy(dtype=float))
            )
            / 2,
            "sod": mid % DAY_S,
            "recent": book["t"].to_numpy(dtype=float) > now - RECENT_S,
        }
    ).dropna(subset=["elev"])
    if frame.empty:
        return pd.DataFrame(columns=[*COLUMNS, "own"])
    keys = [frame["code"], frame["on"]]
    grouped = frame.groupby(keys)
    count = grouped.size()
    elev = grouped["elev"].median()
    elev_spread = (frame["elev"] - grouped["elev"].transform("median")).abs().groupby(keys).median()
    rate = grouped["rate"].median().clip(lower=0.01)
    sod, sod_spread = _circular(frame["sod"], keys)
    recent = frame[frame["recent"]].groupby(["code", "on"])
    recent_elev = recent["elev"].median().where(recent.size() >= MIN_EVENTS)
    blur = grouped["blur"].median()
    stats = pd.DataFrame(
        {
            "n": count,
            "elev": elev,
            "elev_spread": elev_spread,
            "sun_min": elev_spread / rate,
            "sod": sod,
            "clock_min": sod_spread / 60,
            "recent": recent_elev,
            "blur": blur,
        }
    ).unstack("on")
    out = pd.DataFrame(index=stats.index)
    enough = (stats["n"].get(True, 0) >= MIN_EVENTS) & (stats["n"].get(False, 0) >= MIN_EVENTS)

    def part(name: str, on: bool) -> pd.Series:
        if (name, on) in stats.columns:
            column: pd.Series = stats[(name, on)]
            return column
        return pd.Series(np.nan, index=stats.index)

    out["on_deg"] = part("elev", True).where(enough)
    out["off_deg"] = part("elev", False).where(enough)
    out["on_s"] = part("sod", True).where(enough)
    out["off_s"] = part("sod", False).where(enough)
    sun = part("sun_min", True) + part("sun_min", False)
    clock = part("clock_min", True) + part("clock_min", False)
    # a schedule switches at the same minute every day, a photocell follows the sun; both look alike for a few
    # days near a solstice (and all through a midsummer, when the sun barely moves at the elevations lamps
    # switch at), and then the sun is the better guess: a lamp follows a clock only when the elevations of its
    # switches spread more than the sun moves between two of its reports (or a quarter of a degree)
    unexplained = (part("elev_spread", True) + part("elev_spread", False)) > (
        part("blur", True) + part("blur", False) + 0.5
    )
    out["by_clock"] = (enough & (clock < sun / 2) & unexplained).astype(bool)
    # the circuit: medians over its lamps that follow the sun
    circuit = table["circuit"].reindex(out.index)
    own = enough & ~out["by_clock"]
    circuits = pd.DataFrame({"circuit": circuit, "on": out["on_deg"], "off": out["off_deg"]})[own]
    sizes = circuits.groupby("circuit").size()
    medians = circuits.groupby("circuit")[["on", "off"]].median()[sizes >= MIN_CIRCUIT]
    circuit_on = circuit.map(medians["on"])
    circuit_off = circuit.map(medians["off"])
    outer = borrowed(circuits)[sizes >= MIN_CIRCUIT]
    # beyond what the lamp's reporting interval blurs: a lamp reporting every 15 minutes at 39 degrees north
    # sees the sun move two degrees between two reports
    drift = (
        pd.concat(
            [
                (part("recent", True) - circuit_on).abs() - part("blur", True),
                (part("recent", False) - circuit_off).abs() - part("blur", False),
            ],
            axis=1,
        )
        .max(axis=1, skipna=True)
        .clip(lower=0.0)
    )
    out["drift_deg"] = drift.where(~out["by_clock"])
    out["own"] = own
    # a lamp with too few switches of its own is judged by its circuit's
    out.loc[~enough, "on_deg"] = circuit.map(outer["on"])[~enough]
    out.loc[~enough, "off_deg"] = circuit.map(outer["off"])[~enough]
    out["by_clock"] = out["by_clock"].fillna(False).astype(bool)
    return out[[*COLUMNS, "own"]]

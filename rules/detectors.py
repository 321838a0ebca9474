"""Detectors: from readings in a window to a condition per asset and reading (True, False or unknown).

Each detector gets the readings of the assets its rule applies to as a pandas
DataFrame (``asset_id, t, metric, value``; ``t`` is device time in epoch
seconds) and the assets (indexed by asset id), and returns the condition at
each reading time: ``True`` (the fault condition holds), ``False`` (it clearly
does not), ``NaN`` (cannot tell, or inside the hysteresis band: the previous
state continues). :mod:`rules.evaluate` turns conditions into findings with the
rule's ``for`` and ``clear`` durations. docs/rules.md documents each detector.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from floor.durations import parse_duration
from floor.sun import dark_mask, elevation_deg
from rules.errors import RuleFileError

Frame = pd.DataFrame
Conditions = pd.DataFrame  # columns: asset_id, t, bad (float: 1.0, 0.0 or NaN)


@dataclass(frozen=True)
class Param:
    kind: str  # "number", "duration", "metric" or "int"
    default: Any = None

    def check(self, name: str, raw: Any, where: str) -> Any:
        if isinstance(raw, float) and math.isnan(raw):
            raw = None  # an optional parameter carried over from the rule an override changes
        if raw is None:
            if self.default is None:
                raise RuleFileError(f"{where}: {name!r} is required")
            if isinstance(self.default, float) and math.isnan(self.default):
                return self.default  # optional and absent
            raw = self.default
        if self.kind == "duration":
            if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw >= 0:
                return float(raw)  # seconds, as a checked rule carries it
            try:
                return parse_duration(str(raw))
            except ValueError:
                raise RuleFileError(f"{where}: {name} {raw!r} is not a duration like 30m or 2h") from None
        if self.kind == "metric":
            if not isinstance(raw, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", raw):
                raise RuleFileError(f"{where}: {name} must be a metric name, got {raw!r}")
            return raw
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise RuleFileError(f"{where}: {name} must be a number, got {raw!r}")
        if self.kind == "int" and int(raw) != raw:
            raise RuleFileError(f"{where}: {name} must be a whole number, got {raw!r}")
        return int(raw) if self.kind == "int" else float(raw)


@dataclass(frozen=True)
class Detector:
    name: str
    params: dict[str, Param]
    metrics: Callable[[dict[str, Any]], list[str]]
    run: Callable[[Frame, pd.DataFrame, dict[str, Any]], Conditions]
    summary: str

    def check_params(self, raw: dict[str, Any], where: str) -> dict[str, Any]:
        unknown = set(raw) - set(self.params)
        if unknown:
            raise RuleFileError(
                f"{where}: {self.name} has no parameter {sorted(unknown)[0]!r} "
                f"(it takes {', '.join(sorted(self.params)) or 'none'})"
            )
        checked = {name: spec.check(name, raw.get(name), where) for name, spec in self.params.items()}
        if self.name == "threshold":
            try:
                _threshold_params(checked)
            except RuleFileError as exc:
                raise RuleFileError(f"{where}: {exc}") from None
        return checked


def _wide(frame: Frame, metrics: list[str]) -> pd.DataFrame:
    """One row per (asset_id, t) with a column per metric."""
    sub = frame[frame["metric"].isin(metrics)]
    if sub.empty:
        return pd.DataFrame(columns=["asset_id", "t", *metrics])
    keyed = sub.drop_duplicates(["asset_id", "t", "metric"], keep="last").set_index(["asset_id", "t", "metric"])
    wide = keyed["value"].unstack("metric")
    wide.columns = [str(c) for c in wide.columns]
    wide = wide.reset_index()
    for m in metrics:
        if m not in wide.columns:
            wide[m] = np.nan
    return wide


def _result(asset_ids: Any, times: Any, bad: Any) -> Conditions:
    return pd.DataFrame({"asset_id": asset_ids, "t": times, "bad": np.asarray(bad, dtype=float)})


def _dark(assets: pd.DataFrame, asset_ids: pd.Series, times: pd.Series, shift: float = 0.0) -> np.ndarray:
    lat = assets["lat"].reindex(asset_ids).to_numpy(dtype=float)
    lon = assets["lon"].reindex(asset_ids).to_numpy(dtype=float)
    return dark_mask(lat, lon, times.to_numpy(dtype=float) + shift)


# -- generic ---------------------------------------------------------------------------------------------


def threshold(frame: Frame, assets: pd.DataFrame, p: dict[str, Any]) -> Conditions:
    sub = frame[frame["metric"] == p["metric"]]
    v = sub["value"].to_numpy()
    if p.get("above") is not None:
        bad = np.where(v > p["above"], 1.0, np.where(v < p["clear_below"], 0.0, np.nan))
    else:
        bad = np.where(v < p["below"], 1.0, np.where(v > p["clear_above"], 0.0, np.nan))
    return _result(sub["asset_id"].to_numpy(), sub["t"].to_numpy(), bad)


def rate_of_change(frame: Frame, assets: pd.DataFrame, p: dict[str, Any]) -> Conditions:
    sub = frame[frame["metric"] == p["metric"]].sort_values(["asset_id", "t"])
    dv = sub.groupby("asset_id")["value"].diff()
    dt = sub.groupby("asset_id")["t"].diff()
    rate = (dv / dt * 3600).abs()
    bad = np.where(rate > p["max_per_hour"], 1.0, np.where(rate <= p["max_per_hour"], 0.0, np.nan))
    return _result(sub["asset_id"].to_numpy(), sub["t"].to_numpy(), bad)


# -- streetlights ----------------------------------------------------------------------------------------


def _within(x: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Times of day ``x`` inside [start, end), across midnight when start > end (all in seconds of the day)."""
    start = start % 86400
    end = end % 86400
    return np.where(start <= end, (x >= start) & (x < end), (x >= start) | (x < end))


def expected(
    assets: pd.DataFrame, asset_ids: pd.Series, times: pd.Series, margin_deg: float, margin_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """(meant to burn, meant to be off) for each lamp at each time, by its own learned switching
    (rules/switching.py) with a margin either side; civil twilight for a lamp with nothing learned."""
    dark = _dark(assets, asset_ids, times)
    if "on_deg" not in assets.columns:
        return dark, ~dark
    t = times.to_numpy(dtype=float)
    on_deg = assets["on_deg"].reindex(asset_ids).to_numpy(dtype=float)
    off_deg = assets["off_deg"].reindex(asset_ids).to_numpy(dtype=float)
    by_clock = assets["by_clock"].reindex(asset_ids).fillna(False).to_numpy(dtype=bool)
    on_s = assets["on_s"].reindex(asset_ids).to_numpy(dtype=float)
    off_s = assets["off_s"].reindex(asset_ids).to_numpy(dtype=float)
    lat = assets["lat"].reindex(asset_ids).to_numpy(dtype=float)
    lon = assets["lon"].reindex(asset_ids).to_numpy(dtype=float)
    elev = elevation_deg(lat, lon, t)
    low = np.fmin(on_deg, off_deg)
    high = np.fmax(on_deg, off_deg)
    with np.errstate(invalid="ignore"):
        sun_on = elev < low - margin_deg
        sun_off = elev > high + margin_deg
    day_s = t % 86400
    clock_on = _within(day_s, on_s + margin_s, off_s - margin_s)
    clock_off = _within(day_s, off_s + margin_s, on_s - margin_s)
    learned = ~np.isnan(on_deg) & ~np.isnan(off_deg)
    clock = by_clock & ~np.isnan(on_s) & ~np.isnan(off_s)
    burn = np.where(clock, clock_on, np.where(learned, sun_on, dark))
    off = np.where(clock, clock_off, np.where(learned, sun_off, ~dark))
    return burn.astype(bool), off.astype(bool)


def lamp_failure(frame: Frame, assets: pd.DataFrame, p: dict[str, Any]) -> Conditions:
    """Meant to burn by its own switching (or dark by civil twilight), yet drawing no more than ``max_power_w``.

    A lamp that switched since its previous report is cycling, not dead: that reading cannot tell.
    """
    wide = _wide(frame, ["power_w", "switch_count"]).sort_values(["asset_id", "t"])
    dark, _ = expected(assets, wide["asset_id"], wide["t"], p["margin_deg"], p["margin"])
    power = wide["power_w"].to_numpy(dtype=float)
    switched = wide.groupby("asset_id")["switch_count"].diff().fillna(0).to_numpy(dtype=float) > 0
    bad = np.where(
        ~dark | (switched & (power <= p["max_power_w"])), np.nan, np.where(power <= p["max_power_w"], 1.0, 0.0)
    )
    return _result(wide["asset_id"].to_numpy(), wide["t"].to_numpy(), bad)


def day_burner(frame: Frame, assets: pd.DataFrame, p: dict[str, Any]) -> Conditions:
    """Meant to be off by its own switching (or the sun up by civil twilight) now and ``tolerance`` either
    side, yet the lamp drawing more than ``min_power_w``."""
    wide = _wide(frame, ["power_w"])
    tol = p["tolerance"]
    ids, t = wide["asset_id"], wide["t"]
    day = expected(assets, ids, t, p["margin_deg"], tol)[1]
    day &= expected(assets, ids, t - tol, p["margin_deg"], tol)[1]
    day &= expected(assets, ids, t + tol, p["margin_deg"], tol)[1]
    power = wide["power_w"].to_numpy(dtype=float)
    bad = np.where(~day, np.nan, np.where(power > p["min_power_w"], 1.0, 0.0))
    return _result(wide["asset_id"].to_numpy(), wide["t"].to_numpy(), bad)


def cycling(frame: Frame, assets: pd.DataFrame, p: dict[str, Any]) -> Conditions:
    """At least ``min_switches`` switch-ons within ``window`` (from the cumulative switch count).

    Lamps only cycle while they are meant to burn: in daylight a quiet lamp says nothing, so a finding stays
    open from one night to the next instead of closing every morning.
    """
    sub = frame[frame["metric"] == "switch_count"].sort_values(["asset_id", "t"])
    if sub.empty:
        return _result([], [], [])
    t = sub["t"].to_numpy(dtype=float)
    v = sub["value"].to_numpy(dtype=float)
    codes = pd.factorize(sub["asset_id"])[0].astype(float)
    # one sorted key for all assets: searching t - window never leaves the asset's own rows
    span = float(t.max() - t.min()) + p["window"] + 1.0
    key = codes * 2 * span + (t - t.min())
    start = np.searchsorted(key, key - p["window"], side="left")
    covered = t - t[start] >= p["window"] * 0.75
    switches = v - v[start]
    dark = _dark(assets, sub["asset_id"], sub["t"])
    bad = np.where(switches >= p["min_switches"], 1.0, np.where(covered & dark & (switches <= 2), 0.0, np.nan))
    return _result(sub["asset_id"].to_numpy(), t, bad)


def power_deviation(frame: Frame, assets: pd.DataFrame, p: dict[str, Any]) -> Conditions:
    """Burning lamps drawing more or less than rated power at their dim level, and unlike their circuit's peers."""
    wide = _wide(frame, ["power_w", "dim_level_pct", "lamp_on"])
    wide = wide[(wide["lamp_on"] > 0.5) & (wide["dim_level_pct"] > 0)].copy()
    if wide.empty:
        return _result([], [], [])
    rated = assets["rated_power_w"].reindex(wide["asset_id"]).to_numpy(dtype=float)
    wide["ratio"] = wide["power_w"].to_numpy() / (rated * wide["dim_level_pct"].to_numpy() / 100 / p["efficiency"])
    wide["circuit"] = assets["parent_id"].reindex(wide["asset_id"]).to_numpy()
    wide["hour"] = (wide["t"] // 3600).astype(int)
    wide["peers"] = wide.groupby(["circuit", "hour"])["ratio"].transform("median")
    own = (wide["ratio"] - 1).abs()
    peer = (wide["ratio"] - wide["peers"]).abs()
    dark_lamp = wide["ratio"] < 0.2  # a lamp that does not burn is the lamp-failure rule's business
    bad = np.where(
        dark_lamp,
        np.nan,
        np.where(
            (own > p["tolerance"]) & (peer > p["peer_tolerance"]), 1.0, np.where(own <= p["tolerance"] / 2, 0.0, np.nan)
        ),
    )
    return _result(wide["asset_id"].to_numpy(), wide["t"].to_numpy(), bad)


def switching_drift(frame: Frame, assets: pd.DataFrame, p: dict[str, Any]) -> Conditions:
    """A lamp whose recent switching lies more than ``max_deg`` of sun elevation from its circuit's (a failing
    photocell); back within half of it: gone (rules/switching.py learns both)."""
    sub = frame[frame["metric"] == "lamp_on"]
    if "drift_deg" not in assets.columns or sub.empty:
        return _result([], [], [])
    drift = assets["drift_deg"].reindex(sub["asset_id"]).to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        bad = np.where(drift > p["max_deg"], 1.0, np.where(drift <= p["max_deg"] / 2, 0.0, np.nan))
    return _result(sub["asset_id"].to_numpy(), sub["t"].to_numpy(), bad)


def pole_tilt(frame: Frame, assets: pd.DataFrame, p: dict[str, Any]) -> Conditions:
    """A pole_tilt event, or a reported tilt of at least ``min_degrees``."""
    sub = frame[frame["metric"].isin(["tilt_deg", "event:pole_tilt"])]
    v = sub["value"].to_numpy()
    is_event = (sub["metric"] == "event:pole_tilt").to_numpy()
    bad = np.where(is_event | (v >= p["min_degrees"]), 1.0, 0.0)
    return _result(sub["asset_id"].to_numpy(), sub["t"].to_numpy(), bad)


# -- cabinets and other infrastructure ---------------------------------------------------------------------


def supply_loss(frame: Frame, assets: pd.DataFrame, p: dict[str, Any]) -> Conditions:
    """The cabinet meter reports no supply, or a phase below ``min_voltage_v``."""
    phases = ["voltage_l1_v", "voltage_l2_v", "voltage_l3_v"]
    wide = _wide(frame, ["supply_ok", *phases])
    low = wide[phases].min(axis=1).to_numpy(dtype=float) < p["min_voltage_v"]
    off = wide["supply_ok"].to_numpy(dtype=float) < 0.5
    return _result(wide["asset_id"].to_numpy(), wide["t"].to_numpy(), (low | off).astype(float))


def icy_road(frame: Frame, assets: pd.DataFrame, p: dict[str, Any]) -> Conditions:
    """Road surface at or below ``near_zero_c`` and below the dew point (+ ``dew_margin_c``).

    Below, not at: readings rounded to a tenth of a degree that come out equal say the surface is within
    rounding of the dew point, which is no evidence of frost forming (the hysteresis band: the state continues).
    """
    wide = _wide(frame, ["road_temp_c", "dew_point_c"])
    road = wide["road_temp_c"].to_numpy(dtype=float)
    dew = wide["dew_point_c"].to_numpy(dtype=float)
    bad = np.where(
        (road <= p["near_zero_c"]) & (road < dew + p["dew_margin_c"]),
        1.0,
        np.where((road > p["clear_above_c"]) | (road > dew + p["clear_above_c"]), 0.0, np.nan),
    )
    return _result(wide["asset_id"].to_numpy(), wide["t"].to_numpy(), bad)


def absence(frame: Frame, assets: pd.DataFrame, p: dict[str, Any]) -> Conditions:
    """Marker rows only: :mod:`rules.evaluate` judges silence from the last reading and the interval."""
    return _result([], [], [])


def _one(metric: str) -> Callable[[dict[str, Any]], list[str]]:
    return lambda p: [metric]


DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in [
        Detector(
            "threshold",
            {
                "metric": Param("metric"),
                "above": Param("number", float("nan")),
                "clear_below": Param("number", float("nan")),
                "below": Param("number", float("nan")),
                "clear_above": Param("number", float("nan")),
            },
            lambda p: [p["metric"]],
            lambda f, a, p: threshold(f, a, _threshold_params(p)),
            "a metric above (or below) a value; cleared below (above) another",
        ),
        Detector(
            "rate_of_change",
            {"metric": Param("metric"), "max_per_hour": Param("number")},
            lambda p: [p["metric"]],
            rate_of_change,
            "a metric changing faster than max_per_hour",
        ),
        Detector(
            "absence",
            {"intervals": Param("number", 4)},
            lambda p: [],
            absence,
            "no data for intervals x the device's reporting interval",
        ),
        Detector(
            "lamp_failure",
            {
                "max_power_w": Param("number", 3.0),
                "margin_deg": Param("number", 1.0),
                "margin": Param("duration", "15m"),
            },
            lambda p: ["power_w", "switch_count", "lamp_on"],
            lamp_failure,
            "meant to burn by its own switching, lamp drawing no power",
        ),
        Detector(
            "day_burner",
            {
                "min_power_w": Param("number", 5.0),
                "tolerance": Param("duration", "30m"),
                "margin_deg": Param("number", 1.0),
            },
            lambda p: ["power_w", "lamp_on"],
            day_burner,
            "lamp burning while meant to be off by its own switching",
        ),
        Detector(
            "switching_drift",
            {"max_deg": Param("number", 2.5)},
            _one("lamp_on"),
            switching_drift,
            "a lamp switching unlike its circuit (a failing photocell)",
        ),
        Detector(
            "cycling",
            {"window": Param("duration", "2h"), "min_switches": Param("int", 6)},
            _one("switch_count"),
            cycling,
            "many switch-ons within a window",
        ),
        Detector(
            "power_deviation",
            {
                "tolerance": Param("number", 0.25),
                "peer_tolerance": Param("number", 0.25),
                "efficiency": Param("number", 0.92),
            },
            lambda p: ["power_w", "dim_level_pct", "lamp_on"],
            power_deviation,
            "power unlike rated power at the dim level and unlike the circuit's peers",
        ),
        Detector(
            "supply_loss",
            {"min_voltage_v": Param("number", 100.0)},
            lambda p: ["supply_ok", "voltage_l1_v", "voltage_l2_v", "voltage_l3_v"],
            supply_loss,
            "cabinet without mains supply",
        ),
        Detector(
            "icy_road",
            {
                "near_zero_c": Param("number", 0.0),
                "dew_margin_c": Param("number", 0.0),
                "clear_above_c": Param("number", 0.5),
            },
            lambda p: ["road_temp_c", "dew_point_c"],
            icy_road,
            "road surface frozen and at the dew point",
        ),
        Detector(
            "pole_tilt",
            {"min_degrees": Param("number", 5.0)},
            lambda p: ["tilt_deg", "event:pole_tilt"],
            pole_tilt,
            "a pole_tilt event or a reported tilt",
        ),
    ]
}


def _threshold_params(p: dict[str, Any]) -> dict[str, Any]:
    if not math.isnan(p["above"]):
        return {
            "metric": p["metric"],
            "above": p["above"],
            "clear_below": p["above"] if math.isnan(p["clear_below"]) else p["clear_below"],
        }
    if not math.isnan(p["below"]):
        return {
            "metric": p["metric"],
            "above": None,
            "below": p["below"],
            "clear_above": p["below"] if math.isnan(p["clear_above"]) else p["clear_above"],
        }
    raise RuleFileError("threshold needs 'above' or 'below'")

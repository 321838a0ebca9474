"""Scenario files (YAML): when the simulation starts, how long it runs, and which faults happen where.

```yaml
seed: 7
start: 2026-11-02T12:00:00Z
duration: 7d
faults:
  - fault: lampFailure
    target: SL-0003            # an asset id; or targets: [..], circuit: ID, cabinet: ID,
    start: +1d8h               #   or random: {kind: streetlight, count: 3}
    duration: 2d               # or end: +3d / an ISO time; default: until the end
    params: {}                 # fault-specific, see docs/simulators.md
```
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from floor.durations import parse_duration
from floor.errors import LyktaError

ASSET_FAULTS = {
    "lampFailure": "streetlight",
    "lampUnexpectedOn": "streetlight",
    "cyclingFailure": "streetlight",
    "driverDegradation": "streetlight",
    "poleTilt": "streetlight",
    "supplyLoss": "cabinet",
    "doorOpen": "cabinet",
    "icyRoad": "road_weather_station",
    "wellOverflow": "stormwater_well",
    "binFull": "waste_bin",
    "pumpFault": "pump_station",
    "communicationFailure": None,
}
DATA_FAULTS = {"clockSkew", "malformedPayload", "duplicateMessages", "outOfOrder", "oversizedMessage"}
FAULTS = set(ASSET_FAULTS) | DATA_FAULTS


class ScenarioError(LyktaError):
    """The scenario file is invalid."""


def parse_span(text: str, where: str) -> float:
    """'7d', '1d8h', '90m', '30s' as seconds."""
    try:
        return parse_duration(text)
    except ValueError:
        raise ScenarioError(f"{where}: {text!r} is not a duration like 7d, 1d8h, 90m or 30s") from None


@dataclass(frozen=True)
class FaultSpec:
    fault: str
    assets: tuple[str, ...]
    start: float
    end: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    seed: int
    start: float
    end: float
    faults: tuple[FaultSpec, ...]
    source: str = "scenario"

    @property
    def duration(self) -> float:
        return self.end - self.start


def _time(raw: Any, base: float, end: float, where: str) -> float:
    if isinstance(raw, datetime):
        return (raw if raw.tzinfo else raw.replace(tzinfo=UTC)).timestamp()
    if isinstance(raw, str) and raw.startswith("+"):
        return base + parse_span(raw[1:], where)
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise ScenarioError(f"{where}: {raw!r} is neither +<duration> nor an ISO time") from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    raise ScenarioError(f"{where}: expected +<duration> or an ISO time, got {raw!r}")


def seed_of(path: Path | None) -> int:
    """The seed a scenario file asks for (1 without a file), so the fleet can be built with it first."""
    if path is None:
        return 1
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return 1  # load() reports the problem with its file name
    seed = doc.get("seed", 1) if isinstance(doc, dict) else 1
    return seed if isinstance(seed, int) else 1


def load(
    path: Path,
    assets: dict[str, Any],
    children: Any,
    *,
    duration: float | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Scenario:
    """Read and check a scenario against the fleet's assets; ``children(asset_id)`` lists assets below one."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: the scenario file does not exist") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return build(doc, assets, children, source=str(path), duration=duration, start=start, end=end)


def build(
    doc: Any,
    assets: dict[str, Any],
    children: Any,
    *,
    source: str = "scenario",
    duration: float | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Scenario:
    """The scenario of ``doc``; ``duration`` and ``start`` override its own, and ``end`` (without ``start``)
    places it to end then, its own duration (or ``duration``) before."""
    if not isinstance(doc, dict):
        raise ScenarioError(f"{source}: expected a mapping with seed, start, duration and faults")
    unknown = set(doc) - {"seed", "start", "duration", "faults", "description"}
    if unknown:
        raise ScenarioError(f"{source}: unknown key {sorted(unknown)[0]!r}")
    seed = doc.get("seed", 1)
    if not isinstance(seed, int):
        raise ScenarioError(f"{source}, field 'seed': expected a whole number")
    length = (
        duration if duration is not None else parse_span(str(doc.get("duration", "1d")), f"{source}, field 'duration'")
    )
    if start is not None:
        begin = start
    elif end is not None:
        begin = end - length
    else:
        begin = _time(doc.get("start", "2026-11-02T12:00:00+00:00"), 0, 0, f"{source}, field 'start'")
    end = begin + length
    rng = random.Random(seed)  # noqa: S311 - simulation, not secrets
    faults = []
    for n, raw in enumerate(doc.get("faults") or [], start=1):
        where = f"{source}, fault {n}"
        if not isinstance(raw, dict):
            raise ScenarioError(f"{where}: expected a mapping")
        code = raw.get("fault")
        if code not in FAULTS:
            raise ScenarioError(f"{where}, field 'fault': {code!r} is not one of {', '.join(sorted(FAULTS))}")
        targets = _targets(raw, assets, children, rng, where)
        kind = ASSET_FAULTS.get(code)
        for target in targets:
            if kind is not None and assets[target].kind != kind:
                raise ScenarioError(f"{where}: {code} applies to a {kind}, but {target} is a {assets[target].kind}")
        f_start = _time(raw.get("start", "+0s"), begin, end, f"{where}, field 'start'")
        if "end" in raw:
            f_end = _time(raw["end"], begin, end, f"{where}, field 'end'")
        elif "duration" in raw:
            f_end = f_start + parse_span(str(raw["duration"]), f"{where}, field 'duration'")
        else:
            f_end = end
        if f_end <= f_start:
            raise ScenarioError(f"{where}: the fault ends before it starts")
        params = raw.get("params") or {}
        if not isinstance(params, dict):
            raise ScenarioError(f"{where}, field 'params': expected a mapping")
        faults.append(FaultSpec(fault=code, assets=tuple(targets), start=f_start, end=min(f_end, end), params=params))
    return Scenario(seed=seed, start=begin, end=end, faults=tuple(faults), source=source)


def _targets(raw: dict[str, Any], assets: dict[str, Any], children: Any, rng: random.Random, where: str) -> list[str]:
    given = [k for k in ("target", "targets", "circuit", "cabinet", "random") if k in raw]
    if len(given) != 1:
        raise ScenarioError(f"{where}: give exactly one of target, targets, circuit, cabinet or random")
    key = given[0]
    if key in ("target", "targets"):
        ids = [raw[key]] if key == "target" else raw[key]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ScenarioError(f"{where}, field {key!r}: expected asset ids")
    elif key in ("circuit", "cabinet"):
        parent = raw[key]
        if parent not in assets:
            raise ScenarioError(f"{where}, field {key!r}: no asset {parent!r} in the fleet")
        ids = (
            [parent]
            if raw.get("fault") in ("supplyLoss", "doorOpen")
            else [c for c in children(parent) if assets[c].kind == "streetlight"]
        )
    else:
        spec = raw["random"]
        if not isinstance(spec, dict) or "kind" not in spec:
            raise ScenarioError(f"{where}, field 'random': expected {{kind: ..., count: ...}}")
        pool = sorted(a for a, rec in assets.items() if rec.kind == spec["kind"] and rec.device_id)
        count = int(spec.get("count", 1))
        if count > len(pool):
            raise ScenarioError(f"{where}, field 'random': {count} {spec['kind']} wanted, the fleet has {len(pool)}")
        ids = rng.sample(pool, count)
    for asset_id in ids:
        if asset_id not in assets:
            raise ScenarioError(f"{where}: no asset {asset_id!r} in the fleet")
    return list(ids)

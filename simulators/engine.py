"""The simulation: devices reporting on their own schedules, faults applied, as an ordered list of publications.

:func:`simulate` is a pure generator over simulated time: the same fleet, scenario
and seed give the same publications, byte for byte. Publishing them (in real,
accelerated or no time) is :mod:`simulators.publish`'s job.
"""

from __future__ import annotations

import csv
import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from floor.timefmt import iso
from simulators.fleet import Fleet
from simulators.models import ActiveFault, Device
from simulators.scenario import ASSET_FAULTS, Scenario

JITTER = 0.05  # reporting intervals vary by up to 5 %
REPLAY_CHUNK = 100  # readings per store-and-forward batch message
OVERSIZED_BYTES = 300_000


@dataclass(frozen=True)
class Publication:
    """One thing the simulated field does at simulated time ``t``.

    ``action`` is ``publish``, or ``drop``/``restore`` for a device whose link
    goes down (the broker then publishes its Last Will) and comes back.
    """

    t: float
    device_id: str
    topic: str
    payload: bytes
    action: str = "publish"
    retain: bool = False


@dataclass(frozen=True)
class Truth:
    asset_id: str
    device_id: str
    fault: str
    category: str
    start: float
    end: float


def ground_truth(fleet: Fleet, scenario: Scenario) -> list[Truth]:
    devices = fleet.by_asset()
    out = []
    for spec in scenario.faults:
        for asset_id in spec.assets:
            device = devices.get(asset_id)
            category = "asset" if spec.fault in ASSET_FAULTS else "data"
            out.append(
                Truth(
                    asset_id=asset_id,
                    device_id=device.device_id if device else "",
                    fault=spec.fault,
                    category=category,
                    start=spec.start,
                    end=spec.end,
                )
            )
    return out


def observed_truth(fleet: Fleet) -> list[Truth]:
    """Conditions the models produced on their own during :func:`simulate` (natural frost on roads)."""
    return [
        Truth(asset_id=d.asset_id, device_id=d.device_id, fault=code, category="condition", start=start, end=end)
        for d in fleet.devices
        for code, start, end in d.observed
    ]


def write_ground_truth(path: Path, truth: list[Truth]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["asset_id", "device_id", "fault", "category", "start", "end"])
        for t in truth:
            writer.writerow([t.asset_id, t.device_id, t.fault, t.category, iso(t.start), iso(t.end)])


def _attach_faults(fleet: Fleet, scenario: Scenario) -> None:
    devices = fleet.by_asset()
    for each in fleet.devices:
        each.faults = []
    for spec in scenario.faults:
        for asset_id in spec.assets:
            affected = [asset_id]
            if spec.fault == "supplyLoss":
                affected += fleet.children(asset_id)  # the controllers below a dead cabinet lose power too
            for target in affected:
                found = devices.get(target)
                if found is not None:
                    code = spec.fault if target == asset_id else "_poweredOff"
                    found.faults.append(ActiveFault(code, spec.start, spec.end, dict(spec.params)))


def simulate(fleet: Fleet, scenario: Scenario) -> Iterator[Publication]:
    """Every publication of the scenario, in simulated-time order."""
    _attach_faults(fleet, scenario)
    queue: list[tuple[float, int, Device]] = []
    for n, device in enumerate(fleet.devices):
        first = scenario.start + device.rng.uniform(0, device.interval_s)
        heapq.heappush(queue, (first, n, device))
        yield Publication(scenario.start, device.device_id, _topic(device, "status"), b"online", retain=True)
    buffered: dict[str, list[dict[str, Any]]] = {}
    held: dict[str, list[Publication]] = {}
    for each in fleet.devices:
        each.observed.clear()
    while queue:
        t, n, device = heapq.heappop(queue)
        if t >= scenario.end:
            continue
        nxt = t + device.interval_s * (1 + device.rng.uniform(-JITTER, JITTER))
        heapq.heappush(queue, (nxt, n, device))
        faults = device.active(t)
        silent = "communicationFailure" in faults or "_poweredOff" in faults
        was_silent = device.device_id in buffered
        if silent and not was_silent:
            buffered[device.device_id] = []
            if "communicationFailure" in faults:
                yield Publication(t, device.device_id, _topic(device, "status"), b"offline", action="drop")
        metrics = device.metrics(t)
        events = device.events(t)
        if silent:
            if "communicationFailure" in faults:  # the controller keeps measuring and stores what it measured
                buffered[device.device_id].append({"ts": t, "metrics": metrics})
            continue
        if was_silent:
            stored = buffered.pop(device.device_id)
            if stored:
                yield Publication(
                    t, device.device_id, _topic(device, "status"), b"online", action="restore", retain=True
                )
                for i in range(0, len(stored), REPLAY_CHUNK):
                    yield Publication(
                        t,
                        device.device_id,
                        _topic(device, "telemetry"),
                        orjson.dumps({"batch": stored[i : i + REPLAY_CHUNK]}),
                    )
        yield from _deliver(t, device, faults, metrics, events, held)
    for each in fleet.devices:
        each.close_observations(scenario.end)


def _topic(device: Device, channel: str) -> str:
    return f"lykta/{device.tenant}/{device.kind}/{device.device_id}/{channel}"


def _deliver(  # noqa: PLR0917 - the state of one report
    t: float,
    device: Device,
    faults: dict[str, ActiveFault],
    metrics: dict[str, float],
    events: list[dict[str, Any]],
    held: dict[str, list[Publication]],
) -> Iterator[Publication]:
    ts = t + float(faults["clockSkew"].params.get("offset_s", 3600)) if "clockSkew" in faults else t
    payload = orjson.dumps({"ts": ts, "metrics": metrics})
    if "malformedPayload" in faults:
        payload = payload[: len(payload) // 2]  # a truncated write
    if "oversizedMessage" in faults:
        payload = orjson.dumps({"ts": ts, "metrics": metrics, "debug": "x" * OVERSIZED_BYTES})
    out = [Publication(t, device.device_id, _topic(device, "telemetry"), payload)]
    out += [
        Publication(t, device.device_id, _topic(device, "event"), orjson.dumps({"ts": ts, **event})) for event in events
    ]
    if "duplicateMessages" in faults:
        out += out
    if "outOfOrder" in faults:
        # hold messages back and release them newest first, several reports at a time
        pending = held.setdefault(device.device_id, [])
        pending.extend(out)
        if len(pending) >= int(faults["outOfOrder"].params.get("window", 4)):
            yield from reversed(pending)
            pending.clear()
        return
    if held.get(device.device_id):
        yield from reversed(held.pop(device.device_id))
    yield from out

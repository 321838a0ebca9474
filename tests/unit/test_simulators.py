"""Simulators without a broker: determinism, the sun, every fault type as published, and the decoder's view."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from floor.inventory import AssetRecord
from simulators import fleet as fleets
from simulators import scenario as scenarios
from simulators.clock import SimClock
from simulators.engine import Publication, ground_truth, observed_truth, simulate, write_ground_truth

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HELSINGBORG = (56.05, 12.69)


def simulated_week() -> tuple[fleets.Fleet, scenarios.Scenario, list[Publication]]:
    """A week of Solvik with every fault of the example scenario."""
    fleet = fleets.from_file(EXAMPLES / "solvik.geojson", "solvik", 7)
    scenario = scenarios.load(EXAMPLES / "scenario-week.yaml", fleet.assets, fleet.children)
    return fleet, scenario, list(simulate(fleet, scenario))


@pytest.fixture(scope="module")
def week() -> tuple[fleets.Fleet, scenarios.Scenario, list[Publication]]:
    return simulated_week()


def _readings(pubs: list[Publication], device: str) -> list[tuple[float, float, dict[str, float]]]:
    """(simulated publish time, payload ts, metrics) of a device's well-formed single readings."""
    out = []
    for p in pubs:
        if p.device_id == device and p.topic.endswith("/telemetry"):
            try:
                doc = orjson.loads(p.payload)
            except orjson.JSONDecodeError:
                continue
            if "metrics" in doc:
                out.append((p.t, doc["ts"], doc["metrics"]))
    return out


def _window(scenario: scenarios.Scenario, fault: str) -> tuple[float, float]:
    spec = next(f for f in scenario.faults if f.fault == fault)
    return spec.start, spec.end


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    def run(seed: int) -> list[Publication]:
        fleet = fleets.from_file(EXAMPLES / "solvik.csv", "solvik", seed)
        scenario = scenarios.build(
            {
                "seed": seed,
                "start": "2026-11-02T12:00:00Z",
                "duration": "12h",
                "faults": [{"fault": "lampFailure", "random": {"kind": "streetlight", "count": 3}}],
            },
            fleet.assets,
            fleet.children,
        )
        return list(simulate(fleet, scenario))

    first, again, other = run(11), run(11), run(12)
    assert first == again
    assert len(first) > 10_000
    assert first != other


def _noaa_elevation(lat: float, lon: float, t: float) -> float:
    """Solar elevation in degrees by NOAA's solar calculator equations (independent of astral)."""
    jd = t / 86400 + 2440587.5
    c = (jd - 2451545) / 36525
    l0 = (280.46646 + c * (36000.76983 + c * 0.0003032)) % 360
    m = 357.52911 + c * (35999.05029 - 0.0001537 * c)
    e = 0.016708634 - c * (0.000042037 + 0.0000001267 * c)
    rad = math.radians
    eq_center = (
        math.sin(rad(m)) * (1.914602 - c * (0.004817 + 0.000014 * c))
        + math.sin(rad(2 * m)) * (0.019993 - 0.000101 * c)
        + math.sin(rad(3 * m)) * 0.000289
    )
    omega = 125.04 - 1934.136 * c
    apparent = l0 + eq_center - 0.00569 - 0.00478 * math.sin(rad(omega))
    obliquity = 23 + (26 + (21.448 - c * (46.815 + c * (0.00059 - c * 0.001813))) / 60) / 60
    obliquity += 0.00256 * math.cos(rad(omega))
    decl = math.asin(math.sin(rad(obliquity)) * math.sin(rad(apparent)))
    y = math.tan(rad(obliquity / 2)) ** 2
    eqtime = 4 * math.degrees(
        y * math.sin(2 * rad(l0))
        - 2 * e * math.sin(rad(m))
        + 4 * e * y * math.sin(rad(m)) * math.cos(2 * rad(l0))
        - 0.5 * y * y * math.sin(4 * rad(l0))
        - 1.25 * e * e * math.sin(2 * rad(m))
    )
    minutes = (t % 86400) / 60
    hour_angle = ((minutes + eqtime + 4 * lon) % 1440) / 4 - 180
    cos_zenith = math.sin(rad(lat)) * math.sin(decl) + math.cos(rad(lat)) * math.cos(decl) * math.cos(rad(hour_angle))
    return 90 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))


def _crossings(lat: float, lon: float, start: float, end: float) -> list[tuple[float, bool]]:
    """Times the sun crosses -6°: (time, becomes dark)."""
    out = []
    t = start
    below = _noaa_elevation(lat, lon, t) < -6
    while t < end:
        nxt = t + 60
        now_below = _noaa_elevation(lat, lon, nxt) < -6
        if now_below != below:
            lo, hi = t, nxt
            for _ in range(20):
                mid = (lo + hi) / 2
                if (_noaa_elevation(lat, lon, mid) < -6) == below:
                    lo = mid
                else:
                    hi = mid
            out.append((hi, now_below))
        t, below = nxt, now_below
    return out


@pytest.mark.parametrize("day", [date(2026, 6, 21), date(2026, 12, 21)], ids=["midsummer", "midwinter"])
def test_streetlights_switch_at_civil_dusk_and_dawn_in_helsingborg(day: date) -> None:
    lat, lon = HELSINGBORG
    record = AssetRecord(
        where="test",
        asset_id="SL-1",
        kind="streetlight",
        lat=lat,
        lon=lon,
        rated_power_w=50,
        device_id="SLC-1",
        reporting_interval_s=60,
    )
    fleet = fleets.from_records([record], "helsingborg", 1)
    start = datetime.combine(day, datetime.min.time(), UTC).timestamp()
    scenario = scenarios.build({"seed": 1}, fleet.assets, fleet.children, start=start, duration=2 * 86400)
    pubs = list(simulate(fleet, scenario))
    reports = _readings(pubs, "SLC-1")
    switches = [
        (t, bool(m["lamp_on"]))
        for (t, _, m), (_, _, prev) in zip(reports[1:], reports, strict=False)
        if m["lamp_on"] != prev["lamp_on"]
    ]
    reference = _crossings(lat, lon, reports[0][0], reports[-1][0])
    assert len(switches) == len(reference) >= 3
    for (when, on), (ref, dark) in zip(switches, reference, strict=True):
        assert on == dark
        # the lamp switches at the first report after the crossing; astral and NOAA agree within a minute
        assert -60 <= when - ref < 60 * 1.05 + 60, (datetime.fromtimestamp(when, UTC), datetime.fromtimestamp(ref, UTC))
        power = next(m["power_w"] for t, _, m in reports if t == when)
        assert (power > 20) == on


def test_every_fault_type_appears_in_the_ground_truth(
    week: tuple[fleets.Fleet, scenarios.Scenario, list[Publication]], tmp_path: Path
) -> None:
    fleet, scenario, _ = week
    truth = ground_truth(fleet, scenario)
    assert {t.fault for t in truth} == scenarios.FAULTS
    path = tmp_path / "truth.csv"
    write_ground_truth(path, truth)
    lines = path.read_text().splitlines()
    assert lines[0] == "asset_id,device_id,fault,category,start,end"
    assert "SL-0012,SLC-0012,lampFailure,asset,2026-11-03T16:00:00Z,2026-11-05T16:00:00Z" in lines
    assert any(line.startswith("CAB-02,CABM-02,supplyLoss,asset,") for line in lines)
    assert any(",clockSkew,data," in line for line in lines)


def test_streetlight_faults_as_published(week: tuple[fleets.Fleet, scenarios.Scenario, list[Publication]]) -> None:
    _, scenario, pubs = week
    start, end = _window(scenario, "lampFailure")
    failed = [m for t, _, m in _readings(pubs, "SLC-0012") if start <= t < end and m["lamp_on"] == 1]
    assert failed and all(m["power_w"] < 1.0 for m in failed)
    healthy_nights = [m for t, _, m in _readings(pubs, "SLC-0012") if t < start and m["lamp_on"] == 1]
    assert healthy_nights and all(m["power_w"] > 20 for m in healthy_nights)

    start, end = _window(scenario, "lampUnexpectedOn")
    day_burning = [
        m
        for t, _, m in _readings(pubs, "SLC-0040")
        if start <= t < end and 10 <= datetime.fromtimestamp(t, UTC).hour <= 13
    ]
    assert day_burning and all(m["lamp_on"] == 1 and m["power_w"] > 20 for m in day_burning)

    start, end = _window(scenario, "cyclingFailure")
    counts = [m["switch_count"] for t, _, m in _readings(pubs, "SLC-0077") if start <= t < end]
    assert counts[-1] - counts[0] > 20

    start, end = _window(scenario, "driverDegradation")
    ratio = [
        (t, m["power_w"] / m["dim_level_pct"])
        for t, _, m in _readings(pubs, "SLC-0150")
        if m["lamp_on"] == 1 and m["dim_level_pct"] > 0
    ]
    early = [r for t, r in ratio if t < start + 86400]
    late = [r for t, r in ratio if t > end - 86400]
    assert sum(late) / len(late) > 1.3 * sum(early) / len(early)

    tilts = [p for p in pubs if p.device_id == "SLC-0120" and p.topic.endswith("/event")]
    assert [orjson.loads(p.payload)["event"] for p in tilts] == ["pole_tilt"]
    assert orjson.loads(tilts[0].payload)["value"] == 12


def test_cabinet_supply_loss_darkens_the_whole_group(
    week: tuple[fleets.Fleet, scenarios.Scenario, list[Publication]],
) -> None:
    fleet, scenario, pubs = week
    start, end = _window(scenario, "supplyLoss")
    cabinet = [m for t, _, m in _readings(pubs, "CABM-02") if start <= t < end]
    assert cabinet and all(m["supply_ok"] == 0 and m["voltage_l1_v"] == 0 for m in cabinet)
    lamps = {fleet.assets[a].device_id for a in fleet.children("CAB-02") if fleet.assets[a].kind == "streetlight"}
    assert len(lamps) == 66
    silent = [p for p in pubs if p.device_id in lamps and start <= p.t < end]
    assert silent == []
    events = [orjson.loads(p.payload)["event"] for p in pubs if p.device_id == "CABM-02" and p.topic.endswith("/event")]
    assert events == ["supply_lost", "supply_restored"]


def test_communication_loss_is_silence_then_a_replay(
    week: tuple[fleets.Fleet, scenarios.Scenario, list[Publication]],
) -> None:
    _, scenario, pubs = week
    start, end = _window(scenario, "communicationFailure")
    mine = [p for p in pubs if p.device_id == "SLC-0200"]
    drop = next(i for i, p in enumerate(mine) if p.action == "drop")
    restore = next(i for i, p in enumerate(mine) if p.action == "restore")
    assert start <= mine[drop].t < start + 700
    assert all(p.action == "restore" for p in mine[drop + 1 : restore + 1])
    replay = orjson.loads(mine[restore + 1].payload)["batch"]
    assert len(replay) >= 50
    assert all(start <= entry["ts"] < end for entry in replay)
    assert mine[restore].payload == b"online" and mine[restore].retain


def test_bad_data_faults_as_published(week: tuple[fleets.Fleet, scenarios.Scenario, list[Publication]]) -> None:
    _, scenario, pubs = week
    start, end = _window(scenario, "clockSkew")
    skewed = [(t, ts) for t, ts, _ in _readings(pubs, "SLC-0033") if start <= t < end]
    assert skewed and all(ts - t == 30 * 86400 for t, ts in skewed)

    start, end = _window(scenario, "malformedPayload")
    broken = [p for p in pubs if p.device_id == "SLC-0044" and start <= p.t < end and p.topic.endswith("telemetry")]
    assert broken
    for p in broken:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(p.payload)

    start, end = _window(scenario, "duplicateMessages")
    payloads = Counter(p.payload for p in pubs if p.device_id == "SLC-0055" and start <= p.t < end)
    assert payloads and set(payloads.values()) == {2}

    start, end = _window(scenario, "outOfOrder")
    times = [ts for t, ts, _ in _readings(pubs, "SLC-0066") if start <= t < end + 3600]
    assert any(b < a for a, b in itertools.pairwise(times))
    assert len(times) == len(set(times))

    start, end = _window(scenario, "oversizedMessage")
    big = [p for p in pubs if p.device_id == "SLC-0088" and start <= p.t < end]
    assert big and all(len(p.payload) > 262_144 for p in big)


def test_other_infrastructure_faults_as_published(
    week: tuple[fleets.Fleet, scenarios.Scenario, list[Publication]],
) -> None:
    fleet, scenario, pubs = week
    start, end = _window(scenario, "icyRoad")
    icy = [m for t, _, m in _readings(pubs, "D-RWS-01") if start <= t < end]
    assert icy and all(m["road_temp_c"] <= 0 and m["road_temp_c"] <= m["dew_point_c"] for m in icy)
    natural = [(o.start, o.end) for o in observed_truth(fleet) if o.device_id == "D-RWS-02"]
    assert natural, "November nights in the model freeze now and then"
    for t, _, m in _readings(pubs, "D-RWS-02"):
        in_truth = any(a <= t < b for a, b in natural)
        if m["road_temp_c"] <= 0 and m["road_temp_c"] <= m["dew_point_c"]:
            assert in_truth, "natural frost is in the ground truth"
        if m["road_temp_c"] > 0.5 or m["road_temp_c"] > m["dew_point_c"] + 0.5:
            assert not in_truth, "and only frost is"

    start, end = _window(scenario, "wellOverflow")
    assert all(m["water_level_m"] > 2.5 for t, _, m in _readings(pubs, "D-SW-02") if start <= t < end)
    assert all(m["water_level_m"] < 2.0 for _, _, m in _readings(pubs, "D-SW-01"))

    start, _ = _window(scenario, "binFull")
    fills = [m["fill_pct"] for t, _, m in _readings(pubs, "D-WB-03") if t > start + 3 * 86400]
    assert fills and all(f == 100 for f in fills)
    collections: defaultdict[str, int] = defaultdict(int)
    for p in pubs:
        if p.topic.endswith("/event") and b"collected" in p.payload:
            collections[p.device_id] += 1
    assert collections["D-WB-01"] >= 1 and collections["D-WB-03"] == 0

    start, end = _window(scenario, "pumpFault")
    pump = [m for t, _, m in _readings(pubs, "D-PS-01") if start <= t < end]
    assert pump and all(m["pump_fault"] == 1 and m["pump_running"] == 0 for m in pump)
    start, end = _window(scenario, "doorOpen")
    assert any(m["door_open"] == 1 for t, _, m in _readings(pubs, "CABM-01") if start <= t < end)


def test_scenario_errors_name_the_fault_and_field() -> None:
    fleet = fleets.from_file(EXAMPLES / "solvik.csv", "solvik", 1)

    def problem(doc: dict[str, object]) -> str:
        with pytest.raises(scenarios.ScenarioError) as exc:
            scenarios.build(doc, fleet.assets, fleet.children, source="s.yaml")
        return str(exc.value)

    assert "fault 1, field 'fault'" in problem({"faults": [{"fault": "meteorStrike", "target": "SL-0001"}]})
    assert "lampFailure applies to a streetlight, but CAB-01 is a cabinet" in problem(
        {"faults": [{"fault": "lampFailure", "target": "CAB-01"}]}
    )
    assert "no asset 'SL-9999'" in problem({"faults": [{"fault": "lampFailure", "target": "SL-9999"}]})
    assert "exactly one of" in problem({"faults": [{"fault": "lampFailure"}]})
    assert "field 'duration': '3 days'" in problem(
        {"faults": [{"fault": "lampFailure", "target": "SL-0001", "duration": "3 days"}]}
    )
    assert "ends before it starts" in problem(
        {"faults": [{"fault": "lampFailure", "target": "SL-0001", "start": "+2d", "end": "+1d"}]}
    )
    assert "unknown key 'fautls'" in problem({"fautls": []})
    assert "7 waste_bin wanted, the fleet has 6" in problem(
        {"faults": [{"fault": "binFull", "random": {"kind": "waste_bin", "count": 7}}]}
    )


def test_circuit_targets_every_lamp_of_the_circuit() -> None:
    fleet = fleets.from_file(EXAMPLES / "solvik.csv", "solvik", 1)
    scenario = scenarios.build(
        {"faults": [{"fault": "lampFailure", "circuit": "CAB-01-K2"}]}, fleet.assets, fleet.children
    )
    assert len(scenario.faults[0].assets) == 28
    assert all(fleet.assets[a].parent_id == "CAB-01-K2" for a in scenario.faults[0].assets)


def test_the_clock_paces_simulated_time() -> None:
    wall = [100.0]
    clock = SimClock(start=1_000_000.0, speed=10_080.0, wall=lambda: wall[0])
    clock.begin()
    assert clock.delay(1_000_000.0 + 7 * 86400) == pytest.approx(60.0)
    wall[0] += 30
    assert clock.delay(1_000_000.0 + 7 * 86400) == pytest.approx(30.0)
    assert clock.now() == pytest.approx(1_000_000.0 + 30 * 10_080)
    assert SimClock(start=0.0).delay(1e9) == 0.0


def test_generated_fleets_are_stable_and_sized() -> None:
    a = fleets.generate("x", 5, cabinets=3, circuits_per_cabinet=2, lamps_per_circuit=10, sensors=6)
    b = fleets.generate("x", 5, cabinets=3, circuits_per_cabinet=2, lamps_per_circuit=10, sensors=6)
    assert [(d.device_id, d.lat, d.lon) for d in a.devices] == [(d.device_id, d.lat, d.lon) for d in b.devices]
    kinds = Counter(d.kind for d in a.devices)
    assert kinds["streetlight_controller"] == 60 and kinds["cabinet_meter"] == 3
    assert sum(kinds.values()) == 69

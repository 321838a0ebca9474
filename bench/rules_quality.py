"""Detection quality: a simulated week of a city through ingest and the rules, scored against the ground truth.

A generated town of 2,000 streetlights (10 cabinets, 40 circuits) plus road-weather stations, stormwater wells,
waste bins and pump stations; every asset fault type injected several times at random places and times (seeded);
the week ending now is published as fast as possible, stored by `lykta ingest --workers 2`, and every default
rule is replayed over it as if evaluated after every reading (rules/replay.py). Prints precision, recall and
median detection delay per fault type.

Then the second source of truth (``--source both``, the default): the field model's towns at 39, 62 and 68
degrees north in December and June (bench/rules_quality_field.py, ``--field-lamps`` streetlights each).

    .venv/bin/python bench/rules_quality.py [--source simulators|field|both] [--lamps-per-circuit 50]
        [--injections 6] [--seed 42] [--field-lamps 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from floor.sun import elevation_deg  # noqa: E402
from lykta import services  # noqa: E402
from rules import definitions  # noqa: E402
from rules.replay import Episode, backfill  # noqa: E402
from simulators import fleet as fleets  # noqa: E402
from simulators import scenario as scenarios  # noqa: E402
from simulators.clock import SimClock  # noqa: E402
from simulators.engine import ground_truth, observed_truth, simulate  # noqa: E402
from simulators.publish import publish  # noqa: E402
from storage import assets as asset_store  # noqa: E402
from storage import migrations, tenants  # noqa: E402

# simulator fault -> (finding fault, duration range in hours; None: until the end)
FAULTS = {
    "lampFailure": ("lampFailure", (20, 48)),
    "lampUnexpectedOn": ("lampUnexpectedOn", (8, 24)),
    "cyclingFailure": ("cyclingFailure", (20, 30)),
    "driverDegradation": ("powerDeviation", None),
    "poleTilt": ("poleTilt", None),
    "supplyLoss": ("supplyLoss", (2, 5)),
    "doorOpen": ("doorOpen", (0.5, 2)),
    "communicationFailure": ("communicationFailure", (4, 12)),
    "icyRoad": ("icyRoad", (4, 8)),
    "wellOverflow": ("wellOverflow", (2, 4)),
    "binFull": ("binFull", None),
    "pumpFault": ("pumpFault", (2, 6)),
}
GRACE_S = 3 * 3600  # a finding may open this long after the injected fault ended and still count


def build_scenario(fleet: fleets.Fleet, seed: int, injections: int, start: float, days: int) -> scenarios.Scenario:
    rng = random.Random(seed)
    used: set[str] = set()
    faults = []
    for code, (_, hours) in FAULTS.items():
        kind = scenarios.ASSET_FAULTS[code] or "streetlight"
        pool = sorted(a for a, r in fleet.assets.items() if r.kind == kind and r.device_id and a not in used)
        count = min(injections, len(pool))
        for asset in rng.sample(pool, count):
            used.add(asset)
            begin = rng.uniform(0.5, days - 2.0) * 86400
            if code == "driverDegradation":
                begin = rng.uniform(0, 1) * 86400
            spec: dict[str, object] = {"fault": code, "target": asset, "start": f"+{int(begin)}s"}
            if hours is not None:
                spec["duration"] = f"{int(rng.uniform(*hours) * 3600)}s"
            if code == "driverDegradation":
                spec["params"] = {"drift": 0.7}
            faults.append(spec)
    doc = {"seed": seed, "duration": f"{days}d", "faults": faults}
    return scenarios.build(doc, fleet.assets, fleet.children, start=start)


def could_show(fleet: fleets.Fleet, asset_id: str, fault: str, start: float, end: float) -> bool:
    """Whether a lamp fault lasted through what it needs to show: a relay stuck on, 55 minutes of day (the sun
    two degrees above where the simulators switch lamps off: the day burner's 25 minutes and its half-hour
    tolerance); a lamp out or cycling, 55 minutes of night (as far below). Other faults always could."""
    if fault not in ("lampUnexpectedOn", "lampFailure", "cyclingFailure"):
        return True
    record = fleet.assets[asset_id]
    t = np.arange(start, end, 60.0)
    if len(t) == 0 or record.lat is None or record.lon is None:
        return False
    elev = elevation_deg(np.full(len(t), record.lat), np.full(len(t), record.lon), t)
    clear = elev > -4.0 if fault == "lampUnexpectedOn" else elev < -8.0
    longest = run = 0
    for v in clear.tolist():
        run = run + 1 if v else 0
        longest = max(longest, run)
    return longest >= 55


def score(
    truth: list[tuple[str, str, float, float]],
    found: list[tuple[str, str, Episode]],
    apart: list[tuple[str, str, float, float]],
) -> list[str]:
    """Per fault: faults that could show, faults kept apart (``apart``: they could not), findings, precision (a
    finding on a fault kept apart is right too) and recall with their counts, median delay; false findings."""
    lines = [
        f"{'fault':<22}{'could show':>11}{'kept apart':>11}{'findings':>9}{'precision':>15}{'recall':>13}"
        f"{'median delay':>14}"
    ]
    codes = sorted({f for _, f, _, _ in truth} | {f for _, f, _ in found})
    for code in codes:
        t_rows = [(a, s, e) for a, f, s, e in truth if f == code]
        all_rows = t_rows + [(a, s, e) for a, f, s, e in apart if f == code]
        f_rows = [(a, ep) for a, f, ep in found if f == code]

        def overlaps(a: str, s: float, e: float, ep: Episode, asset: str) -> bool:
            end = ep.cleared_at if ep.cleared_at is not None else float("inf")
            return a == asset and ep.observed_at <= e + GRACE_S and end >= s - 600

        hits = [any(overlaps(a, s, e, ep, fa) for fa, ep in f_rows) for a, s, e in t_rows]
        good = [any(overlaps(a, s, e, ep, fa) for a, s, e in all_rows) for fa, ep in f_rows]
        delays = [
            min(ep.detected_at - s for fa, ep in f_rows if overlaps(a, s, e, ep, fa)) / 60
            for (a, s, e), hit in zip(t_rows, hits, strict=True)
            if hit
        ]
        precision = f"{sum(good) / len(good):.2f} ({sum(good)}/{len(good)})" if good else "-"
        recall = f"{sum(hits) / len(hits):.2f} ({sum(hits)}/{len(hits)})" if hits else "-"
        delay = f"{statistics.median(delays):.0f} min" if delays else "-"
        lines.append(
            f"{code:<22}{len(t_rows):>11}{len(all_rows) - len(t_rows):>11}{len(f_rows):>9}{precision:>15}"
            f"{recall:>13}{delay:>14}"
        )
        for (fa, ep), ok in zip(f_rows, good, strict=True):
            if not ok:
                lines.append(
                    f"  false {code} on {fa} observed {time.strftime('%d %H:%M', time.gmtime(ep.observed_at))}"
                )
        for (a, s, e), hit in zip(t_rows, hits, strict=True):
            if not hit:
                when = f"{time.strftime('%d %H:%M', time.gmtime(s))} for {(e - s) / 3600:.1f} h"
                lines.append(f"  missed {code} on {a} from {when}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lamps-per-circuit", type=int, default=50)
    parser.add_argument("--injections", type=int, default=6)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--source", choices=["simulators", "field", "both"], default="both")
    parser.add_argument("--field-lamps", type=int, default=300, help="streetlights of each field-model town")
    parser.add_argument(
        "--speed",
        type=float,
        default=2016.0,
        help="simulated seconds per second (default 2016: the week in five minutes)",
    )
    args = parser.parse_args()
    if args.source != "field":
        print("source 1: the simulators\n", flush=True)
        simulators_source(args)
    if args.source != "simulators":
        print("\nsource 2: the field model (bench/rules_quality_field.py)", flush=True)
        sys.path.insert(0, str(ROOT / "bench"))
        import rules_quality_field  # noqa: PLC0415 - a sibling script, found once its folder is on the path

        rules_quality_field.main(["--lamps", str(args.field_lamps)])


def simulators_source(args: argparse.Namespace) -> None:
    """The simulated week through Mosquitto and ingest, scored against the simulators' ground truth."""
    tmp = Path(tempfile.mkdtemp(prefix="lykta-bench-rules-"))
    tmp.chmod(0o755)
    state = services.up(tmp / "state", ephemeral=True)
    assert state.postgres is not None and state.mqtt is not None
    url = state.postgres.url()
    ingest = None
    try:
        fleet = fleets.generate(
            "town", args.seed, cabinets=10, circuits_per_cabinet=4, lamps_per_circuit=args.lamps_per_circuit, sensors=40
        )
        with psycopg.connect(url, autocommit=True) as conn:
            migrations.migrate(conn)
            tenants.upsert(conn, "town", "Generated town", "sv", "Europe/Stockholm")
            asset_store.import_records(conn, "town", list(fleet.assets.values()), "generated")
        start = time.time() - args.days * 86400
        plan = build_scenario(fleet, args.seed, args.injections, start, args.days)
        env = {
            **os.environ,
            "LYKTA_DATABASE_URL": url,
            "LYKTA_MQTT_URL": state.mqtt.url,
            "LYKTA_INGEST_METRICS_PORT": "0",
            "LYKTA_INGEST_CLIENT_ID": "quality",
            "LYKTA_LOG_LEVEL": "WARNING",
            "LYKTA_INGEST_STATS_INTERVAL_S": "1",
        }
        ingest = subprocess.Popen([sys.executable, "-m", "lykta.cli", "ingest", "--workers", "2"], env=env)
        time.sleep(3)
        began = time.monotonic()
        own = {t.device_id for t in ground_truth(fleet, plan) if t.fault == "communicationFailure"}
        report = asyncio.run(
            publish(
                "127.0.0.1", state.mqtt.port, simulate(fleet, plan), SimClock(plan.start, args.speed), own_links=own
            )
        )
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                row = conn.execute("SELECT coalesce(sum(received), 0) FROM ingest_stats").fetchone()
                if row and row[0] >= report.publications:
                    break
                time.sleep(1)
        print(f"published and stored {report.publications:,} messages in {time.monotonic() - began:.0f} s")
        truth = [
            (t.asset_id, FAULTS[t.fault][0], t.start, t.end)
            for t in ground_truth(fleet, plan)
            if t.fault in FAULTS and t.fault != "communicationFailure"
        ]
        # the simulators' communication failure is a network outage: the controller keeps measuring and replays
        # its buffer, so by device time it never fell silent (the live service reports it while nothing arrives)
        apart = sum(1 for t in ground_truth(fleet, plan) if t.fault == "communicationFailure")
        truth += [(t.asset_id, t.fault, t.start, t.end) for t in observed_truth(fleet)]

        began = time.monotonic()
        with psycopg.connect(url) as conn:
            found = [(x.asset_id, r.fault, e) for r, x, e in backfill(conn, definitions.load(), plan.start, plan.end)]
        print(f"rules replayed over the week in {time.monotonic() - began:.0f} s\n")
        lamps = sum(1 for r in fleet.assets.values() if r.kind == "streetlight")
        print(f"{args.days}-day town: {lamps} streetlights, {len(fleet.devices)} devices, seed {args.seed}\n")
        shown = [t for t in truth if could_show(fleet, *t)]
        hidden = [t for t in truth if t not in shown]
        for line in score(shown, found, hidden):
            print(line)
        print(
            f"kept apart: {len(hidden)} lamp faults without the day or night they need to show; {apart} "
            "store-and-forward outages (no silence by device time)"
        )
    finally:
        if ingest is not None:
            ingest.send_signal(signal.SIGTERM)
            ingest.wait(60)
        services.down(tmp / "state")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Rules speed: one evaluation cycle of every default rule over 100,000 devices reporting every 10 minutes.

A generated city (98,000 streetlights under 200 cabinets, plus road-weather stations, stormwater wells, waste
bins and pump stations: 100,000 devices) is simulated with faults injected (lamp failures, cycling lamps,
driver degradation, tilted poles, silent controllers, a cabinet without supply). Its readings are written
through ingest's own write path, with receive times a second after device times, as live ingest would. Then:

* baseline: the first cycle, which reads every rule's whole window (7 hours of readings) for every device;
* target: the following cycles, each folding in the ten minutes that arrived since the previous one;
* late data: one more cycle, in which ``--late`` devices (a gateway back online) deliver every reading of the
  measured cycles at once; their history since then is evaluated again as a backtest would.

Target: one cycle in under 30 s on a 2-core machine. Prints both and their ratio.

    .venv/bin/python bench/rules_speed.py [--cabinets 200] [--hours 7.5] [--cycles 3] [--late 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lykta import services  # noqa: E402
from rules.evaluate import Shard  # noqa: E402
from rules.service import run_cycle  # noqa: E402
from simulators import fleet as fleets  # noqa: E402
from simulators import scenario as scenarios  # noqa: E402
from simulators.engine import simulate  # noqa: E402
from storage import assets as asset_store  # noqa: E402
from storage import migrations, tenants  # noqa: E402
from storage.ingest import EventRow, IngestBatch, write_batch  # noqa: E402

END = datetime(2026, 11, 10, 17, 30, tzinfo=UTC).timestamp()  # after dusk: lamps have just switched on
STEP_S = 600.0
FAULTS = {  # fault -> how many
    "lampFailure": 300,
    "cyclingFailure": 60,
    "driverDegradation": 60,
    "poleTilt": 30,
    "communicationFailure": 100,
    "supplyLoss": 1,
    "lampUnexpectedOn": 60,
}


def scenario(fleet: fleets.Fleet, start: float, end: float, seed: int) -> scenarios.Scenario:
    rng = random.Random(seed)
    faults = []
    used: set[str] = set()
    for code, count in FAULTS.items():
        kind = scenarios.ASSET_FAULTS[code] or "streetlight"
        pool = sorted(a for a, r in fleet.assets.items() if r.kind == kind and r.device_id and a not in used)
        for asset in rng.sample(pool, min(count, len(pool))):
            used.add(asset)
            begin = rng.uniform(0.2, 0.9) * (end - start)
            faults.append({"fault": code, "target": asset, "start": f"+{int(begin)}s"})
    return scenarios.build(
        {"seed": seed, "duration": f"{int(end - start)}s", "faults": faults}, fleet.assets, fleet.children, start=start
    )


class Writer:
    """Publications to the database through ingest's write path, in batches."""

    def __init__(self, url: str) -> None:
        self.url = url
        with psycopg.connect(url) as conn:
            self.keys = dict(conn.execute("SELECT device_id, device_key FROM devices").fetchall())
            self.metric_ids: dict[str, int] = dict(conn.execute("SELECT name, metric_id FROM metrics").fetchall())
        self.batch = IngestBatch()
        self.pool = ThreadPoolExecutor(1)
        self.pending: Future[None] | None = None
        self.messages = 0
        self.readings = 0

    def add(self, topic: str, payload: bytes, t: float, device_id: str, received: float | None = None) -> None:
        channel = topic.rsplit("/", 1)[-1]
        key = self.keys[device_id]
        at = t + 1 if received is None else received
        if channel == "telemetry":
            metrics = orjson.loads(payload)["metrics"]
            self.batch.readings.add_message(key, at, [(t, self.metric_ids[m], float(v)) for m, v in metrics.items()])
            self.readings += len(metrics)
        elif channel == "event":
            body = orjson.loads(payload)
            self.batch.events.append(EventRow(key, t, body["event"], body.get("value"), {}, at))
        else:
            return
        self.messages += 1
        if len(self.batch.readings) >= 200_000:
            self.flush()

    def flush(self) -> None:
        """Write the batch in the background while the simulator makes the next one."""
        self.wait()
        batch, self.batch = self.batch, IngestBatch()

        async def write() -> None:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                await write_batch(conn, batch)

        self.pending = self.pool.submit(asyncio.run, write())

    def wait(self) -> None:
        if self.pending is not None:
            self.pending.result()
            self.pending = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cabinets", type=int, default=200)
    parser.add_argument("--hours", type=float, default=7.5, help="history before the first cycle")
    parser.add_argument("--cycles", type=int, default=3, help="incremental cycles measured after the first")
    parser.add_argument("--late", type=int, default=1000, help="devices delivering the measured cycles late")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lykta-bench-rules-speed-"))
    tmp.chmod(0o755)
    state = services.up(tmp / "state", ephemeral=True)
    assert state.postgres is not None
    url = state.postgres.url()
    try:
        fleet = fleets.generate(
            "city",
            args.seed,
            cabinets=args.cabinets,
            circuits_per_cabinet=10,
            lamps_per_circuit=49,
            sensors=args.cabinets * 9,
        )
        with psycopg.connect(url, autocommit=True) as conn:
            migrations.migrate(conn)
            tenants.upsert(conn, "city", "Generated city", "sv", "Europe/Stockholm")
            asset_store.import_records(conn, "city", list(fleet.assets.values()), "generated")
        lamps = sum(1 for r in fleet.assets.values() if r.kind == "streetlight")
        print(
            f"city: {len(fleet.devices):,} devices ({lamps:,} streetlights), {args.hours} h of history "
            f"then {args.cycles} cycles of {STEP_S / 60:.0f} min"
        )
        first = END
        ends = [first + STEP_S * (n + 1) for n in range(args.cycles + (1 if args.late else 0))]
        late_at = ends[-1] if args.late else None
        plan = scenario(fleet, first - args.hours * 3600, ends[-1], args.seed)
        # a gateway's controllers: everything of the measured cycles arrives with the cycle after them
        held_devices = set(random.Random(args.seed).sample(sorted(d.device_id for d in fleet.devices), args.late))
        held: list[tuple[str, bytes, float, str]] = []
        writer = Writer(url)
        boundaries = [first, *ends]
        results: list[tuple[str, float, str]] = []
        began = time.monotonic()

        def cycle(at: float) -> None:
            """Write what is due, run the cycle that ends at ``at`` and print how long it took."""
            writer.flush()
            writer.wait()
            label = "first cycle (whole windows)" if at == first else f"cycle to +{(at - first) / 60:.0f} min"
            if at == late_at:
                for h in held:
                    writer.add(*h, received=at)
                writer.flush()
                writer.wait()
                label = f"late data of {len(held_devices):,} devices"
            if at == first:
                print(
                    f"history written: {writer.messages:,} messages, {writer.readings:,} readings "
                    f"in {time.monotonic() - began:.0f} s"
                )
            t0 = time.monotonic()
            outcome = run_cycle(url, [], at, Shard())
            spent = time.monotonic() - t0
            results.append((label, spent, f"{outcome.opened} opened, {outcome.kept} kept, {outcome.cleared} cleared"))
            print(f"{label:<30}{spent:>8.1f} s   {results[-1][2]}", flush=True)

        for p in simulate(fleet, plan):
            while boundaries and p.t > boundaries[0]:
                cycle(boundaries.pop(0))
            if p.action == "publish":
                if late_at is not None and p.device_id in held_devices and first < p.t <= late_at - STEP_S:
                    held.append((p.topic, p.payload, p.t, p.device_id))
                    continue
                writer.add(p.topic, p.payload, p.t, p.device_id)
        while boundaries:
            cycle(boundaries.pop(0))
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT fault, status, count(*) FROM findings GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
        print("\nfindings: " + ", ".join(f"{f} {s} {n}" for f, s, n in rows))
        baseline = results[0][1]
        cycles = [s for label, s, _ in results[1:] if not label.startswith("late")]
        late = [s for label, s, _ in results if label.startswith("late")]
        if late:
            print(f"late data: {late[0]:.1f} s, {late[0] / baseline:.2f}x the baseline")
        if cycles:
            median = statistics.median(cycles)
            print(
                f"\nbaseline (whole windows): {baseline:.1f} s; incremental cycle: median {median:.1f} s, "
                f"max {max(cycles):.1f} s; ratio {baseline / median:.1f}x; target < 30 s: "
                f"{'met' if max(cycles) < 30 else 'NOT met'}"
            )
    finally:
        services.down(tmp / "state")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

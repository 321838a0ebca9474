"""What synchronous replication costs: ingest's write path (batches of 500 messages of 6 readings, binary COPY,
as ``lykta ingest`` writes them) from ``--writers`` concurrent writers for ``--seconds``, against one
PostgreSQL (the baseline, in the same run), then three members under Patroni in synchronous mode (each commit
waits for the synchronous standby's flush), then the same cluster without synchronous mode. All with fsync on.
Prints messages per second (min/median/max over ``--rounds``) and the ratio to one node.

    .venv/bin/python bench/ha.py [--rounds 3] [--seconds 15] [--writers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from floor import inventory  # noqa: E402
from lykta import ha, services  # noqa: E402
from storage import assets, migrations, tenants  # noqa: E402
from storage.ingest import IngestBatch, write_batch  # noqa: E402

BATCH = 500


def prepare(url: str) -> tuple[list[int], list[int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        migrations.migrate(conn)
        tenants.upsert(conn, "solvik", "Solvik kommun")
        assets.import_records(conn, "solvik", inventory.parse_file(ROOT / "examples" / "solvik.csv"), "solvik.csv")
        devices = [int(r[0]) for r in conn.execute("SELECT device_key FROM devices ORDER BY 1")]
        names = ("power_w", "voltage_v", "current_a", "power_factor", "dim_level_pct", "lamp_on")
        metrics = [
            int(r[0]) for r in conn.execute("SELECT metric_id FROM metrics WHERE name = ANY(%s)", (list(names),))
        ]
    return devices, metrics


@dataclass(frozen=True)
class Load:
    url: str
    devices: list[int]
    metrics: list[int]
    seconds: float
    start: float
    """the first device time written"""


async def writer(load: Load, n: int) -> int:
    """Batches written until ``load.seconds`` pass; messages written."""
    written = 0
    t = load.start + n * 10_000_000
    deadline = time.monotonic() + load.seconds
    async with await psycopg.AsyncConnection.connect(load.url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            batch = IngestBatch()
            for i in range(BATCH):
                t += 1
                device = load.devices[i % len(load.devices)]
                batch.readings.add_message(device, t + 1, [(t, m, float(i % 50)) for m in load.metrics])
            await write_batch(conn, batch)
            written += BATCH
    return written


async def rate(load: Load, writers: int) -> float:
    counts = await asyncio.gather(*(writer(load, n) for n in range(writers)))
    return sum(counts) / load.seconds


def measure(name: str, url: str, args: argparse.Namespace, start: float) -> list[float]:
    devices, metrics = prepare(url)
    rates = []
    for r in range(args.rounds):
        rates.append(asyncio.run(rate(Load(url, devices, metrics, args.seconds, start + r * 1e9), args.writers)))
        print(f"  {name} round {r + 1}: {rates[-1]:,.0f} msg/s", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--writers", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    start = time.time() - 30 * 86400
    for name in ("one node", "Patroni, synchronous", "Patroni, asynchronous"):
        tmp = Path(tempfile.mkdtemp(prefix="lykta-bench-ha-"))
        tmp.chmod(0o755)
        try:
            if name == "one node":
                state = services.up(tmp / "state")
                assert state.postgres is not None
                url = state.postgres.url()
            else:
                url = ha.up(tmp / "state", synchronous=name.endswith(", synchronous")).url()
            results[name] = measure(name, url, args, start)
        finally:
            if name == "one node":
                services.down(tmp / "state")
            else:
                ha.down(tmp / "state")
            shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(results["one node"])
    print(f"\n{'':<24} {'min':>9} {'median':>9} {'max':>9}   ratio to one node (msg/s, {args.writers} writers)")
    for name, rates in results.items():
        mid = statistics.median(rates)
        print(f"{name:<24} {min(rates):>9,.0f} {mid:>9,.0f} {max(rates):>9,.0f}   {mid / base:.2f}x")


if __name__ == "__main__":
    main()

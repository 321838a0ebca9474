"""Ingest benchmark: MQTT -> lykta ingest -> TimescaleDB on this machine, against a naive baseline.

Everything runs here: a private Mosquitto and PostgreSQL+TimescaleDB (durable
settings: fsync on), the publishers, and ingest. Commit times come from
PostgreSQL itself (``track_commit_timestamp``), so "last commit" and
"publish-to-commit latency" are exact, not polled.

Phases:
  baseline    a minimal paho-mqtt subscriber doing one INSERT per message with autocommit
  throughput  N messages published as fast as the publishers can, ingest with --workers W;
              messages/s from the first publish to the last commit; ratio to the baseline
  latency     a steady rate for some seconds; p50/p95/p99 of commit time - publish time
  outage      the database stopped for some seconds under a steady rate; ingest's memory;
              every reading stored after the database returns

    .venv/bin/python bench/ingest.py --messages 1000000 --workers 2

Prints one table and exits 0; it asserts nothing about speed (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from floor import inventory  # noqa: E402
from lykta import postgres, services  # noqa: E402
from simulators.load import LoadPlan, run_load  # noqa: E402
from storage import assets, migrations, tenants  # noqa: E402

DEVICES = [f"SLC-{n:04d}" for n in range(1, 245)]


def _publisher(port: int, plan: LoadPlan, out: object) -> None:
    sent, _ = asyncio.run(run_load("127.0.0.1", port, plan))
    out.put(sent)  # type: ignore[attr-defined]


def publish(
    port: int,
    start: int,
    stop: int,
    base: float,
    processes: int,
    *,
    rate: float = 0.0,
    wall_ts: bool = False,
    poison_every: int = 0,
) -> tuple[float, float]:
    """Publish with the simulator's load mode in several processes; (first publish, last acknowledged) times."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    share = (stop - start) // processes
    procs = []
    for p in range(processes):
        lo = start + p * share
        hi = stop if p == processes - 1 else lo + share
        plan = LoadPlan(
            tenant="solvik",
            devices=DEVICES,
            start=lo,
            stop=hi,
            base=base,
            wall_clock=wall_ts,
            rate=rate / processes,
            poison_every=poison_every,
        )
        procs.append(ctx.Process(target=_publisher, args=(port, plan, out)))
    first = time.time()
    for proc in procs:
        proc.start()
    sent = sum(out.get() for _ in procs)
    for proc in procs:
        proc.join()
    if sent != stop - start:
        raise SystemExit(f"the publishers sent {sent} of {stop - start} messages")
    return first, time.time()


def naive_subscriber(mqtt_port: int, url: str, keys: dict[str, int], expected: int, done: object) -> None:
    conn = psycopg.connect(url, autocommit=True)
    metric_ids = dict(conn.execute("SELECT name, metric_id FROM metrics").fetchall())
    received = 0

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        nonlocal received
        device = msg.topic.split("/")[3]
        doc = orjson.loads(msg.payload)
        rows = [(doc["ts"], keys[device], metric_ids[name], float(value)) for name, value in doc["metrics"].items()]
        conn.execute(
            "INSERT INTO telemetry (device_time, device_key, metric_id, value, received_at) "
            "SELECT to_timestamp(t), k, m, v, now() FROM unnest(%s::float8[], %s::int8[], %s::int2[], %s::float8[])"
            " AS r(t, k, m, v)",
            ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]),
        )
        received += 1
        if received >= expected:
            done.set()  # type: ignore[attr-defined]

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-naive", protocol=paho.MQTTv5)
    client.on_message = on_message
    client.connect("127.0.0.1", mqtt_port)
    client.subscribe("lykta/+/+/+/+", qos=1)
    client.loop_start()
    done.wait()  # type: ignore[attr-defined]
    client.disconnect()
    client.loop_stop()


def last_commit(url: str, since: float) -> tuple[int, float]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(pg_xact_commit_timestamp(xmin))) FROM telemetry "
            "WHERE received_at >= to_timestamp(%s)",
            (since - 1,),
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1] or 0)


def wait_rows(url: str, since: float, expected: int, limit: float = 3600) -> float:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        count, last = last_commit(url, since)
        if count >= expected:
            return last
        time.sleep(1.0)
    raise SystemExit(f"only {count} of {expected} rows arrived within {limit} s")


def rss_mb(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total = max(total, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return total


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far (less sensitive to the machine than wall time)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def worker_pids(supervisor: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()] or [supervisor]


class Sampler(threading.Thread):
    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0.0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb(self.pids))
            time.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--baseline-messages", type=int, default=20_000)
    parser.add_argument("--latency-rate", type=float, default=10_000)
    parser.add_argument("--latency-seconds", type=float, default=30)
    parser.add_argument("--outage-seconds", type=float, default=60)
    parser.add_argument("--outage-rate", type=float, default=2_000)
    parser.add_argument("--batch-messages", type=int, default=2000)
    parser.add_argument("--poison-messages", type=int, default=200_000, help="0 skips the poison phase")
    parser.add_argument("--poison-every", type=int, default=1000)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lykta-bench-"))
    tmp.chmod(0o755)
    state_dir = tmp / "state"
    pg_settings = {
        "track_commit_timestamp": "on",
        "shared_buffers": "'2GB'",
        "max_wal_size": "'8GB'",
        "checkpoint_timeout": "'15min'",
    }
    state = services.up(state_dir, postgres_settings=pg_settings)
    if state.postgres is None or state.mqtt is None:
        raise SystemExit("the local services did not start")
    url, port = state.postgres.url(), state.mqtt.port
    results: list[tuple[str, str]] = []
    ingest: subprocess.Popen[bytes] | None = None
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrations.migrate(conn)
            tenants.upsert(conn, "solvik", "Solvik kommun")
            assets.import_records(conn, "solvik", inventory.parse_file(ROOT / "examples" / "solvik.csv"), "sample")
            keys = dict(conn.execute("SELECT device_id, device_key FROM devices").fetchall())

        # -- baseline ------------------------------------------------------------------------------
        n = args.baseline_messages
        done = mp.get_context("fork").Event()
        naive = mp.get_context("fork").Process(target=naive_subscriber, args=(port, url, keys, n, done))
        naive.start()
        time.sleep(1.0)
        first, _ = publish(port, 0, n, time.time() - 20 * 86400, 1)
        end = wait_rows(url, first, n * 6)
        naive.join(60)
        baseline = n / (end - first)
        results.append(("baseline: paho + one INSERT per message, autocommit", f"{baseline:,.0f} msg/s ({n:,} msgs)"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE telemetry, telemetry_latest")

        # -- throughput ----------------------------------------------------------------------------
        env = {
            **os.environ,
            "LYKTA_DATABASE_URL": url,
            "LYKTA_MQTT_URL": state.mqtt.url,
            "LYKTA_INGEST_CLIENT_ID": "bench-ingest",
            "LYKTA_INGEST_METRICS_PORT": "0",
            "LYKTA_INGEST_BATCH_MESSAGES": str(args.batch_messages),
            "LYKTA_LOG_LEVEL": "WARNING",
        }
        ingest = subprocess.Popen(
            [sys.executable, "-m", "lykta.cli", "ingest", "--workers", str(args.workers)], env=env
        )
        time.sleep(3.0)
        pids = worker_pids(ingest.pid)
        sampler = Sampler(pids)
        sampler.start()
        n = args.messages
        cpu_before = cpu_seconds(pids)
        first, published = publish(port, 0, n, time.time() - 30 * 86400, args.publishers)
        end = wait_rows(url, first, n * 6)
        cpu_used = cpu_seconds(pids) - cpu_before
        sampler.running = False
        rate = n / (end - first)
        results.append(
            (
                f"lykta ingest --workers {args.workers}: first publish to last commit",
                f"{rate:,.0f} msg/s = {rate * 6:,.0f} readings/s ({n:,} msgs, {end - first:.1f} s)",
            )
        )
        results.append(("publishers alone (same run)", f"{n / (published - first):,.0f} msg/s"))
        results.append(("ratio to baseline", f"{rate / baseline:.1f}x"))
        results.append(("peak RSS of one ingest process at full load", f"{sampler.peak:.0f} MB"))
        results.append(("CPU time of the ingest processes per message", f"{cpu_used / n * 1e6:.1f} µs"))

        # -- poison --------------------------------------------------------------------------------
        if args.poison_messages > 0:
            start, k = n + 10_000_000, args.poison_every
            count = args.poison_messages
            poisoned = len([i for i in range(start, start + count) if i % k == 0])
            first, _ = publish(port, start, start + count, time.time() - 25 * 86400, args.publishers, poison_every=k)
            end = wait_rows(url, first, (count - poisoned) * 6)
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT count(*) FROM dead_letters WHERE reason = 'bad_schema'").fetchone()
            poison_rate = count / (end - first)
            results.append(
                (
                    f"one poison message (U+0000 in an event) per {k:,}: first publish to last commit",
                    f"{poison_rate:,.0f} msg/s ({count:,} msgs, {row[0] if row else 0:,} dead letters); "
                    f"{poison_rate / rate:.2f}x the clean run",
                )
            )

        # -- latency -------------------------------------------------------------------------------
        total = int(args.latency_rate * args.latency_seconds)
        first, _ = publish(port, n, n + total, 0, args.publishers, rate=args.latency_rate, wall_ts=True)
        wait_rows(url, first, total * 6)
        with psycopg.connect(url) as conn:
            row = conn.execute(
                """SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY lat), max(lat), count(*)
                   FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - device_time) AS lat
                         FROM telemetry WHERE received_at >= to_timestamp(%s) AND metric_id = 1) s""",
                (first - 1,),
            ).fetchone()
        assert row is not None
        p50, p95, p99 = row[0]
        results.append(
            (
                f"publish-to-commit latency at {args.latency_rate:,.0f} msg/s for {args.latency_seconds:g} s",
                f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
                f"max {row[1] * 1000:.0f} ms ({row[2]:,} msgs)",
            )
        )

        # -- outage --------------------------------------------------------------------------------
        if args.outage_seconds > 0:
            start = n + total
            total = int(args.outage_rate * args.outage_seconds)
            sampler = Sampler(worker_pids(ingest.pid))
            sampler.start()
            postgres.stop(state.postgres)
            stopped = time.time()
            publish(port, start, start + total, time.time() - 10 * 86400, 1, rate=args.outage_rate)
            time.sleep(max(0.0, args.outage_seconds - (time.time() - stopped)))
            services.up(state_dir, postgres_settings=pg_settings)
            wait_rows(url, stopped, total * 6)
            sampler.running = False
            results.append(
                (
                    f"database stopped {args.outage_seconds:g} s under {args.outage_rate:,.0f} msg/s",
                    f"all {total:,} msgs stored after restart; peak RSS of one ingest process {sampler.peak:.0f} MB",
                )
            )
    finally:
        if ingest is not None:
            ingest.send_signal(signal.SIGTERM)
            ingest.wait(120)
        services.down(state_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(k) for k, _ in results)
    print(f"\nlykta ingest benchmark on {os.cpu_count()} cores\n")
    for key, value in results:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()

"""Ingest as separate processes under faults: SIGKILL, a database outage, two processes sharing the load."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from floor import inventory
from lykta import postgres, services
from lykta.services import ServiceState
from storage import assets, migrations, tenants
from tests.helpers import EXAMPLES, Publisher, reading, wait_for


class IngestProcess:
    """``lykta ingest`` as a child process, as an operator runs it."""

    def __init__(self, database_url: str, mqtt_url: str, client_id: str, *args: str, **env: str) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix=f"{client_id}-", suffix=".log", delete=False)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")},
            "LYKTA_DATABASE_URL": database_url,
            "LYKTA_MQTT_URL": mqtt_url,
            "LYKTA_INGEST_CLIENT_ID": client_id,
            "LYKTA_INGEST_METRICS_PORT": "0",
            "LYKTA_INGEST_STATS_INTERVAL_S": "1",
            "LYKTA_INGEST_BATCH_AGE_MS": "50",
            **env,
        }
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        before = self.text().count("connected to mqtt")
        proc = subprocess.Popen(
            [sys.executable, "-m", "lykta.cli", "ingest", *self.args], env=self.env, stdout=self.log, stderr=self.log
        )
        self.proc = proc
        self.starts += 1
        wait_for(
            lambda: self.text().count("connected to mqtt") > before or proc.poll() is not None,
            timeout=30,
            what="ingest to connect",
        )
        if proc.poll() is not None:
            raise AssertionError(f"ingest exited with {proc.returncode}:\n{self.text()[-3000:]}")

    def start_without_waiting(self) -> None:
        """Start it and return at once (it may still be waiting for the database or the broker)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lykta.cli", "ingest", *self.args], env=self.env, stdout=self.log, stderr=self.log
        )
        self.starts += 1

    def text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def close(self) -> None:
        self.stop()
        self.log.close()
        os.unlink(self.log.name)


def _count(url: str, sql: str = "SELECT count(*) FROM telemetry") -> int:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute(sql).fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row and row[0] is not None else 0


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _stream(port: int, start: int, stop: int, base: float, rate: float) -> threading.Thread:
    def run() -> None:
        pub = Publisher(port, client_id=f"stream-{start}")
        pub.publish((reading(i, base) for i in range(start, stop)), rate=rate)
        pub.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(town_url: str, broker: str) -> None:
    rng = random.Random(4242)
    base = time.time() - 3 * 86400
    total = 6000
    ingest = IngestProcess(town_url, broker, "kill-me")
    try:
        ingest.start()
        stream = _stream(_port(broker), 0, total, base, rate=1000)
        for _ in range(4):
            time.sleep(rng.uniform(0.3, 1.2))
            ingest.kill()
            time.sleep(rng.uniform(0.0, 0.5))
            ingest.start()
        stream.join(120)
        wait_for(lambda: _count(town_url) == total * 6, timeout=90, what="every reading after the kills")
        assert ingest.starts == 5
        assert (
            _count(town_url, "SELECT count(DISTINCT (device_key, metric_id, device_time)) FROM telemetry") == total * 6
        )
        assert _count(town_url, "SELECT count(*) FROM dead_letters") == 0
    finally:
        ingest.close()


def test_sigterm_commits_and_acknowledges_everything(town_url: str, broker: str) -> None:
    base = time.time() - 86400
    ingest = IngestProcess(town_url, broker, "clean-stop")
    try:
        ingest.start()
        _stream(_port(broker), 0, 3000, base, rate=3000).join(60)
        assert ingest.stop() == 0
        assert "stopped" in ingest.text()
        stored = _count(town_url)
        assert stored == 3000 * 6
        # Acknowledged messages are not redelivered: a restarted ingest receives nothing new.
        ingest.start()
        wait_for(
            lambda: "session resumed" in ingest.text(), timeout=30, what="the restarted ingest to resume its session"
        )
        assert ingest.stop() == 0
        assert _count(town_url, "SELECT sum(duplicates) FROM ingest_stats") == 0
    finally:
        ingest.close()


def test_two_processes_split_the_devices(town_url: str, broker: str) -> None:
    """Two processes, partitions 1/2 and 2/2: each stores about half of the devices, together all of them once."""
    base = time.time() - 2 * 86400
    first = IngestProcess(town_url, broker, "share-1", LYKTA_INGEST_PARTITION="1/2")
    second = IngestProcess(town_url, broker, "share-2", LYKTA_INGEST_PARTITION="2/2")
    try:
        first.start()
        second.start()
        _stream(_port(broker), 0, 8000, base, rate=4000).join(60)
        wait_for(lambda: _count(town_url) == 8000 * 6, timeout=60, what="all readings")
        assert first.stop() == 0 and second.stop() == 0
        with psycopg.connect(town_url) as conn:
            split: dict[str, int] = dict(
                conn.execute("SELECT instance, sum(received) FROM ingest_stats GROUP BY instance").fetchall()
            )
        assert set(split) == {"share-1", "share-2"}
        assert sum(split.values()) == 8000
        assert min(split.values()) > 1000, split
    finally:
        first.close()
        second.close()


@pytest.fixture
def private_services(state_dir: Path) -> ServiceState:
    state = services.up(state_dir, ephemeral=True)
    assert state.postgres is not None
    with psycopg.connect(state.postgres.url(), autocommit=True) as conn:
        migrations.migrate(conn)
        tenants.upsert(conn, "solvik", "Solvik kommun")
        assets.import_records(conn, "solvik", inventory.parse_file(EXAMPLES / "solvik.csv"), "solvik.csv")
    return state


def test_database_outage_holds_messages_with_bounded_memory(private_services: ServiceState, state_dir: Path) -> None:
    pg, mq = private_services.postgres, private_services.mqtt
    assert pg is not None and mq is not None
    url = pg.url()
    base = time.time() - 86400
    ingest = IngestProcess(
        url, mq.url, "outage", LYKTA_INGEST_BATCH_MESSAGES="1000", LYKTA_INGEST_RECEIVE_MAXIMUM="5000"
    )
    peak = 0.0
    try:
        ingest.start()
        _stream(mq.port, 0, 2000, base, rate=2000).join(60)
        wait_for(lambda: _count(url) == 2000 * 6, what="readings before the outage")
        postgres.stop(pg)
        stream = _stream(mq.port, 2000, 14000, base, rate=3000)
        while stream.is_alive():
            peak = max(peak, ingest.rss_mb())
            time.sleep(0.2)
        for _ in range(15):
            peak = max(peak, ingest.rss_mb())
            time.sleep(0.2)
        assert ingest.proc is not None and ingest.proc.poll() is None, "ingest must survive the outage"
        assert "database unavailable" in ingest.text()
        again = services.up(state_dir, ephemeral=True)
        assert again.postgres is not None and again.postgres.port == pg.port
        wait_for(lambda: _count(url) == 14000 * 6, timeout=120, what="every reading after the outage")
        assert _count(url, "SELECT count(*) FROM dead_letters") == 0
        assert peak < 300, f"ingest used {peak:.0f} MB during the outage"
    finally:
        ingest.close()


def test_sigterm_while_the_database_is_away_leaves_messages_to_the_broker(
    private_services: ServiceState, state_dir: Path
) -> None:
    pg, mq = private_services.postgres, private_services.mqtt
    assert pg is not None and mq is not None
    url = pg.url()
    base = time.time() - 86400
    ingest = IngestProcess(url, mq.url, "term-in-outage")
    try:
        ingest.start()
        _stream(mq.port, 0, 500, base, rate=2000).join(60)
        wait_for(lambda: _count(url) == 500 * 6, what="readings before the outage")
        postgres.stop(pg)
        _stream(mq.port, 500, 1500, base, rate=2000).join(60)
        wait_for(lambda: "database unavailable" in ingest.text(), what="ingest to notice the outage")
        assert ingest.stop() == 0
        assert "were not committed and stay unacknowledged" in ingest.text()
        services.up(state_dir, ephemeral=True)
        ingest.start()
        wait_for(lambda: _count(url) == 1500 * 6, timeout=60, what="the held messages, redelivered")
        assert "Traceback" not in ingest.text()
    finally:
        ingest.close()

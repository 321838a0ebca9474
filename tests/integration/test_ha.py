"""PostgreSQL under Patroni with etcd (Debian's packages), three members in synchronous mode, started by
lykta's own code on loopback ports (lykta/ha.py): what a client was told is committed survives losing the
primary's machine (Patroni and PostgreSQL killed together), and a planned switchover loses nothing. Skipped,
saying so, only where Patroni or etcd is not installed."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from floor import inventory
from lykta import ha, services
from storage import assets, migrations, tenants
from tests.conftest import make_state_dir
from tests.helpers import EXAMPLES, served, wait_for

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def cluster() -> Iterator[ha.HaCluster]:
    missing = [b for b in ("patroni", "etcd") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed here: ./bootstrap setup installs patroni and etcd-server")
    state = make_state_dir("lykta-ha-")
    try:
        yield ha.up(state, ephemeral=True)
    finally:
        ha.down(state)
        shutil.rmtree(state, ignore_errors=True)


def lose_the_primarys_machine(cluster: ha.HaCluster) -> ha.PgMember:
    """Kill the primary's Patroni and PostgreSQL at once with SIGKILL: its machine is gone. The member lost."""
    lost = ha.leader(cluster)
    assert lost is not None
    postmaster = ha.postmaster_pid(cluster, lost)
    assert postmaster is not None
    for pid in (lost.pid, postmaster):
        os.kill(pid, signal.SIGKILL)
    return lost


def _write_until_it_works(url: str, timeout: float = 60.0) -> tuple[float, int]:
    """Seconds until a write commits through the multi-host address, and the port that took it."""
    began = time.monotonic()
    while True:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute("INSERT INTO acked (n) VALUES (-1) RETURNING inet_server_port()").fetchone()
                return time.monotonic() - began, int(row[0]) if row else 0
        except psycopg.Error:
            if time.monotonic() - began > timeout:
                raise
            time.sleep(0.1)


def _stored(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [int(r[0]) for r in conn.execute("SELECT n FROM acked WHERE n >= 0 ORDER BY n")]


def test_what_was_committed_survives_losing_the_primarys_machine(cluster: ha.HaCluster) -> None:
    url = cluster.url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS acked")
        conn.execute("CREATE TABLE acked (n integer NOT NULL)")
        sync = conn.execute(
            "SELECT current_setting('synchronous_standby_names'), current_setting('synchronous_commit')"
        ).fetchone()
        assert sync is not None and sync[0] and sync[1] == "on", "a commit waits for the named synchronous standby"
        acked = []
        for n in range(300):  # each commit returned = told to the client; the synchronous standby has it
            conn.execute("INSERT INTO acked (n) VALUES (%s)", (n,))
            acked.append(n)
    lost = lose_the_primarys_machine(cluster)
    took, port = _write_until_it_works(url)
    assert port != lost.pg_port
    assert _stored(url) == acked  # every acknowledged commit, once
    print(f"\nwrites again {took:.1f} s after the primary's machine was lost (Patroni ttl {ha.TIMING['ttl']} s)")
    ha.start_member(cluster, lost, ephemeral=True)  # the machine comes back: it rejoins as a replica
    ha.wait_for(cluster, timeout=120)
    roles = ha.roles(cluster)
    assert roles[lost.name] in ("replica", "sync_standby"), roles


def test_a_switchover_loses_nothing(cluster: ha.HaCluster) -> None:
    """A writer commits all through a planned switchover: every commit it was told of is kept, and the longest
    wait between two commits is the switchover's pause."""
    url = cluster.url()
    ha.wait_for(cluster, timeout=120)
    before = _stored(url)
    primary = ha.leader(cluster)
    assert primary is not None
    candidate = next(
        m for m in cluster.members if m.name != primary.name and ha.roles(cluster)[m.name] == "sync_standby"
    )
    committed: list[tuple[int, float]] = []
    stop = threading.Event()

    def writer() -> None:
        n = 100_000
        while not stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    while not stop.is_set():
                        conn.execute("INSERT INTO acked (n) VALUES (%s)", (n,))
                        committed.append((n, time.monotonic()))
                        n += 1
            except psycopg.Error:
                n += 1  # that one may or may not have committed: it was never acknowledged, so never counted
                time.sleep(0.05)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(1.0)
        status, answer = ha.rest(primary, "/switchover", "POST", {"leader": primary.name, "candidate": candidate.name})
        assert status == 200, answer
        _write_until_it_works(url)
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(30)
    assert ha.leader(cluster) == candidate
    stored = set(_stored(url))
    assert set(before) <= stored and {n for n, _ in committed} <= stored  # nothing acknowledged is lost
    pause = max(b - a for (_, a), (_, b) in itertools.pairwise(committed))
    print(f"\n{len(committed)} commits through the switchover; the longest pause {pause:.1f} s")


@pytest.fixture(scope="module")
def ha_services() -> Iterator[tuple[ha.HaCluster, str]]:
    """The broker and the Patroni cluster, as ``lykta services up --ha`` starts them; Solvik migrated."""
    missing = [b for b in ("patroni", "etcd") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed here: ./bootstrap setup installs patroni and etcd-server")
    state = make_state_dir("lykta-ha-ingest-")
    try:
        started = services.up(state, ephemeral=True, high_availability=True)
        cluster = ha.HaCluster.load(state / "ha")
        assert cluster is not None and started.mqtt is not None and started.postgres is None
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            migrations.migrate(conn)
            tenants.upsert(conn, "solvik", "Solvik kommun")
            assets.import_records(conn, "solvik", inventory.parse_file(EXAMPLES / "solvik.csv"), "solvik.csv")
        yield cluster, started.mqtt.url
    finally:
        services.down(state)
        shutil.rmtree(state, ignore_errors=True)


def test_ingest_follows_the_primary_and_loses_nothing_acknowledged(ha_services: tuple[ha.HaCluster, str]) -> None:
    """2,000 msg/s while the primary's machine is lost: every message the broker took is stored exactly once on
    the new primary, and ingest writes again once a new primary is elected."""
    from tests.integration.test_ingest_faults import IngestProcess, _count, _stream

    cluster, mqtt_url = ha_services
    url = cluster.url()
    base = time.time() - 86400
    total, rate = 24_000, 2000
    ingest = IngestProcess(url, mqtt_url, "ha-ingest", LYKTA_INGEST_BATCH_MESSAGES="500")
    timeline: list[tuple[float, int]] = []
    try:
        ingest.start()
        stream = _stream(int(mqtt_url.rsplit(":", 1)[1]), 0, total, base, rate=rate)
        time.sleep(4.0)
        lost = lose_the_primarys_machine(cluster)
        killed = time.monotonic()
        while stream.is_alive() or time.monotonic() - killed < 60:
            timeline.append((time.monotonic() - killed, _count(url)))
            if timeline[-1][1] == total * 6:
                break
            time.sleep(0.1)
        stream.join(60)
        wait_for(lambda: _count(url) == total * 6, timeout=120, what="every reading after the failover")
        assert ingest.proc is not None and ingest.proc.poll() is None, "ingest must survive the failover"
    finally:
        ingest.close()
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT count(*), count(DISTINCT (device_key, metric_id, device_time)) FROM telemetry"""
        ).fetchone()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert row == (total * 6, total * 6) and dead == (0,)  # each reading once, none rejected
    at_kill = next(n for t, n in timeline if t >= 0)
    resumed = next((t for t, n in timeline if n > at_kill and n > 0), None)
    assert resumed is not None
    print(f"\ningest wrote again {resumed:.1f} s after the primary's machine was lost")
    ha.start_member(cluster, lost, ephemeral=True)
    ha.wait_for(cluster, timeout=120)


def test_cases_and_the_api_carry_on_after_a_failover(ha_services: tuple[ha.HaCluster, str]) -> None:
    """A case opened before the primary is lost is there after; the cases service and the API go on, the API's
    first answer after the failover included (its pooled connections to the lost primary are replaced)."""
    import httpx

    from cases import service as cases_service
    from cases.api import create_app
    from cases.policy import Policies
    from floor import config
    from tests.integration.test_api import bearer
    from tests.integration.test_cases import add_crews, finding

    cluster, _ = ha_services
    url = cluster.url()
    settings = config.load(environ={}, smtp_port=9)
    add_crews(url)
    finding(url, "SL-0003", "lampFailure", time.time() - 3600)
    assert cases_service.run_once(url, Policies(), settings, time.time()).opened == 1
    token = TestClientToken.make(url)
    with served(create_app(url, Policies(), pool_size=2)) as base, httpx.Client(base_url=base) as api:
        assert len(api.get("/api/v1/cases", headers=bearer(token)).json()) == 1
        lost = lose_the_primarys_machine(cluster)
        _write_until_it_works_anywhere(url)
        answer = api.get("/api/v1/cases", headers=bearer(token))
        assert answer.status_code == 200 and [c["asset_id"] for c in answer.json()] == ["SL-0003"]
    finding(url, "SL-0151", "lampFailure", time.time() - 600)
    assert cases_service.run_once(url, Policies(), settings, time.time()).opened == 1  # the service goes on
    ha.start_member(cluster, lost, ephemeral=True)
    ha.wait_for(cluster, timeout=120)


class TestClientToken:
    @staticmethod
    def make(url: str) -> str:
        from cases.api_auth import hash_token, new_token
        from storage import api as api_store

        token = new_token()
        with psycopg.connect(url, autocommit=True) as conn:
            api_store.create_token(conn, hash_token(token), "solvik", "operator", None, "ha test")
        return token


def _write_until_it_works_anywhere(url: str, timeout: float = 60.0) -> None:
    began = time.monotonic()
    while True:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE TEMP TABLE probe (x int)")
                return
        except psycopg.Error:
            if time.monotonic() - began > timeout:
                raise
            time.sleep(0.1)


def test_a_switchover_under_ingest_loses_nothing_and_stops_it_briefly(ha_services: tuple[ha.HaCluster, str]) -> None:
    """A planned switchover while 2,000 msg/s arrive: every reading stored once; the longest time without a
    new commit is the switchover's pause (docs/operations.md states it)."""
    from tests.integration.test_ingest_faults import IngestProcess, _count, _stream

    cluster, mqtt_url = ha_services
    ha.wait_for(cluster, timeout=120)
    url = cluster.url()
    before = _count(url)
    base = time.time() - 2 * 86400
    total = 20_000
    ingest = IngestProcess(url, mqtt_url, "ha-switchover", LYKTA_INGEST_BATCH_MESSAGES="500")
    timeline: list[tuple[float, int]] = []
    try:
        ingest.start()
        stream = _stream(int(mqtt_url.rsplit(":", 1)[1]), 0, total, base, rate=2000)
        time.sleep(3.0)
        primary = ha.leader(cluster)
        assert primary is not None
        candidate = next(m for m in cluster.members if ha.roles(cluster)[m.name] == "sync_standby")
        asked = time.monotonic()
        status, answer = ha.rest(primary, "/switchover", "POST", {"leader": primary.name, "candidate": candidate.name})
        assert status == 200, answer
        while stream.is_alive():
            timeline.append((time.monotonic() - asked, _count(url)))
            time.sleep(0.1)
        wait_for(lambda: _count(url) == before + total * 6, timeout=120, what="every reading after the switchover")
    finally:
        ingest.close()
    assert ha.leader(cluster) == candidate
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (device_key, metric_id, device_time)) FROM telemetry"
        ).fetchone()
    assert row == (before + total * 6, before + total * 6)
    grew = [t for (t, n), (_, m) in itertools.pairwise(timeline) if m > n >= 0]
    pause = max(b - a for a, b in itertools.pairwise([0.0, *grew]))
    print(f"\ningest's longest pause through the switchover: {pause:.1f} s")


def test_the_replicas_and_their_lag_are_on_the_ingestion_health_dashboard(
    ha_services: tuple[ha.HaCluster, str],
) -> None:
    """Read as Grafana's installation reader: on the primary every replica with its synchronous state; through
    ``prefer-standby`` (Grafana may read a replica) how far behind the replica it reads is."""
    from dashboards.grafana_sql import expand
    from storage import grafana
    from storage.panels import QUERIES

    cluster, _ = ha_services
    ha.wait_for(cluster, timeout=120)
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        grafana.ensure_reader(conn, "lykta_grafana", "reader-password-1")
    now = datetime.now(UTC)
    sql = expand(QUERIES["ingest.replication"].sql, time_from=now - timedelta(hours=1), time_to=now, interval_s=60,
                 variables={})  # fmt: skip
    reader = cluster.url().replace(f"lykta:{quote(cluster.password, safe='')}@", "lykta_grafana:reader-password-1@")
    primary_url = reader.replace("target_session_attrs=read-write", "target_session_attrs=primary")  # a read-only role
    with psycopg.connect(primary_url) as conn:
        rows = conn.execute(sql).fetchall()
    assert sorted(r[2] for r in rows) == ["async", "sync"], rows  # two replicas, one synchronous
    replica_url = reader.replace("target_session_attrs=read-write", "target_session_attrs=prefer-standby")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the reader role reaches the replicas with the next WAL they replay
        try:
            with psycopg.connect(replica_url) as conn:
                here = conn.execute(sql).fetchall()
                assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            break
        except psycopg.OperationalError:
            time.sleep(0.5)
    [(member, _, state, behind_s, _)] = here
    assert member.startswith("this replica") and state == "read" and behind_s >= 0


def test_backups_of_the_cluster_survive_a_failover_and_restore_to_a_point_in_time(
    ha_services: tuple[ha.HaCluster, str],
) -> None:
    """pgBackRest backs up the cluster from its primary and every member archives WAL, so the archive goes on
    across a failover: a restore to a time after the failover matches the new primary as it was then."""
    from lykta import backup, postgres
    from tests.integration.test_backup import _sums
    from tests.integration.test_cases import finding

    cluster, _ = ha_services
    ha.wait_for(cluster, timeout=120)
    state_dir = Path(cluster.root).parent
    url = cluster.url()
    lines = backup.backup(state_dir, None, "full")
    assert any("full backup" in line for line in lines), lines
    lost = lose_the_primarys_machine(cluster)
    _write_until_it_works_anywhere(url)
    finding(url, "SL-0200", "lampFailure", time.time() - 60)  # written on the new primary, archived from it
    expected = _sums(url)
    time.sleep(1.5)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'").fetchone()
    assert row is not None
    time.sleep(1.5)
    finding(url, "SL-0201", "lampFailure", time.time() - 60)  # after the target: not restored
    backup.archive_now(url)  # the new primary's WAL, past the target, in the repository
    restored = backup.restore(state_dir, str(row[0]), state_dir / "drill")
    try:
        assert _sums(restored.url()) == expected
    finally:
        postgres.stop(restored)
        ha.start_member(cluster, lost, ephemeral=True)
    ha.wait_for(cluster, timeout=120)


def test_rollups_and_retention_run_on_the_new_primary(ha_services: tuple[ha.HaCluster, str]) -> None:
    """``lykta db maintain`` (rollups, energy, retention) follows the primary: readings written before the
    failover are rolled up on the new primary after it."""
    from lykta import admin
    from tests.integration.test_rules import store_readings

    cluster, _ = ha_services
    ha.wait_for(cluster, timeout=120)
    url = cluster.url()
    hour = (int(time.time()) // 3600 - 30) * 3600
    store_readings(url, "SLC-0042", [(hour + 60 * i, {"power_w": 50.0 + i}) for i in range(30)])
    lost = lose_the_primarys_machine(cluster)
    _write_until_it_works_anywhere(url)
    said = admin.maintain(url, 400)
    assert said[0].startswith("rollups: ") and " 0 hour(s)" not in said[0], said
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT r.value_min, r.value_max FROM telemetry_hourly r JOIN devices d USING (device_key)
               JOIN metrics m USING (metric_id)
               WHERE d.device_id = 'SLC-0042' AND m.name = 'power_w' AND r.bucket = to_timestamp(%s)""",
            (hour,),
        ).fetchone()
    assert row == (50.0, 79.0)
    ha.start_member(cluster, lost, ephemeral=True)
    ha.wait_for(cluster, timeout=120)

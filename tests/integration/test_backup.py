"""Backups that restore: pgBackRest (Debian's package) archives the local cluster's WAL and takes a backup;
the drill restores to a point in time into a fresh cluster and compares cases, work orders and a day of
telemetry with the source as it was at that time (counts and checksums), and nothing from after it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cases import service as cases_service
from cases.policy import Policies
from floor import config, inventory
from lykta import backup, postgres, services
from lykta.services import ServiceState
from storage import assets, migrations, tenants
from tests.conftest import make_state_dir
from tests.helpers import EXAMPLES
from tests.integration.test_cases import add_crews, finding
from tests.integration.test_rules import store_readings

pytestmark = pytest.mark.reliability
DAY = time.time() - 2 * 86400
SUMS = {
    "cases": "SELECT count(*), md5(string_agg(row_to_json(c)::text, ',' ORDER BY case_id)) FROM cases c",
    "work_orders": "SELECT count(*), md5(string_agg(row_to_json(w)::text, ',' ORDER BY work_order_id)) "
    "FROM work_orders w",
    "telemetry": "SELECT count(*), md5(string_agg(concat_ws(':', device_key, metric_id, device_time, value), ',' "
    "ORDER BY device_key, metric_id, device_time)) FROM telemetry "
    f"WHERE device_time >= to_timestamp({DAY}) AND device_time < to_timestamp({DAY + 86400})",
}


@pytest.fixture
def local() -> Iterator[tuple[Path, ServiceState]]:
    if shutil.which("pgbackrest") is None:
        pytest.skip("pgbackrest is not installed here: ./bootstrap setup installs it")
    state_dir = make_state_dir("lykta-backup-")
    try:
        state = services.up(state_dir, ephemeral=True)
        assert state.postgres is not None
        url = state.postgres.url()
        with psycopg.connect(url, autocommit=True) as conn:
            migrations.migrate(conn)
            tenants.upsert(conn, "solvik", "Solvik kommun", "sv", "Europe/Stockholm")
            assets.import_records(conn, "solvik", inventory.parse_file(EXAMPLES / "solvik.csv"), "solvik.csv")
        yield state_dir, state
    finally:
        services.down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def _sums(url: str) -> dict[str, tuple[int, str | None]]:
    with psycopg.connect(url) as conn:
        return {name: tuple(conn.execute(sql).fetchone() or (0, None)) for name, sql in SUMS.items()}


def _day_of_readings(url: str, devices: list[str], start: float) -> None:
    for device in devices:
        store_readings(url, device, [(start + 600 * i, {"power_w": 40.0 + i % 7, "lamp_on": 1.0}) for i in range(72)])


def test_a_restore_to_a_point_in_time_matches_the_source_then(local: tuple[Path, ServiceState]) -> None:
    state_dir, state = local
    assert state.postgres is not None
    url = state.postgres.url()
    settings = config.load(environ={}, smtp_port=9)
    add_crews(url)
    _day_of_readings(url, ["SLC-0001", "SLC-0002", "SLC-0003"], DAY)
    finding(url, "SL-0003", "lampFailure", DAY + 3600)
    cases_service.run_once(url, Policies(), settings, time.time())
    lines = backup.backup(state_dir, state.postgres, "full")
    assert any("full backup" in line for line in lines), lines
    _day_of_readings(url, ["SLC-0004"], DAY + 12 * 3600)  # after the backup, before the target: from the WAL
    finding(url, "SL-0151", "lampFailure", DAY + 7200)
    cases_service.run_once(url, Policies(), settings, time.time())
    expected = _sums(url)
    time.sleep(1.5)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'").fetchone()
        assert row is not None
        target = str(row[0])
    time.sleep(1.5)
    _day_of_readings(url, ["SLC-0005"], DAY + 6 * 3600)  # after the target: must not be restored
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE cases SET priority = 'immediate'")
    backup.archive_now(url)  # the last segment in the repository
    assert _sums(url) != expected
    into = state_dir / "restored"
    restored = backup.restore(state_dir, target, into)
    try:
        assert restored.port != state.postgres.port
        assert _sums(restored.url()) == expected
        with psycopg.connect(restored.url()) as conn:
            assert conn.execute("SELECT count(*) FROM findings").fetchone() == (2,)
    finally:
        postgres.stop(restored)


def test_the_command_line_backs_up_and_restores(local: tuple[Path, ServiceState]) -> None:
    import os
    import signal
    import subprocess
    import sys

    state_dir, state = local
    assert state.postgres is not None

    def lykta(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")}
        done = subprocess.run([sys.executable, "-m", "lykta.cli", "--state-dir", str(state_dir), *args],
                              capture_output=True, text=True, env=env, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "full backup" in lykta("db", "backup")
    assert "incr backup" in lykta("db", "backup", "--kind", "incr")
    backup.archive_now(state.postgres.url())
    said = lykta("db", "restore", "--into", str(state_dir / "drill"))
    assert "restored into" in said and "connect with: postgresql://" in said
    url = said.rsplit("connect with: ", 1)[1].strip()
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM assets").fetchone() == (269 - 1,)  # the inventory, all of it
    finally:
        pid = int((state_dir / "drill" / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)

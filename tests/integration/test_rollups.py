"""The write path and the Apache-path rollups and retention, against the real TimescaleDB."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import psycopg
import pytest

from floor import inventory
from storage import assets, maintenance, tenants
from storage.ingest import BatchResult, IngestBatch, write_batch

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


class Reading(NamedTuple):
    device_key: int
    metric_id: int
    device_time: datetime
    value: float


def write_readings(conn: psycopg.Connection, readings: list[Reading], received_at: datetime) -> BatchResult:
    """Store readings through ingest's write path, one message per reading."""
    batch = IngestBatch()
    for r in readings:
        batch.readings.add_message(
            r.device_key, received_at.timestamp(), [(r.device_time.timestamp(), r.metric_id, r.value)]
        )

    async def write() -> BatchResult:
        async with await psycopg.AsyncConnection.connect(
            conn.info.dsn + f" password={conn.info.password}", autocommit=True
        ) as aconn:
            return await write_batch(aconn, batch)

    return asyncio.run(write())


POWER, VOLTAGE = 1, 2


@pytest.fixture
def devices(conn: psycopg.Connection) -> list[int]:
    tenants.upsert(conn, "testby", "Testby")
    records = inventory.parse_csv(
        "asset_id,kind,parent_id,lat,lon,rated_power_w,device_id\n"
        "C1,cabinet,,56.0,12.7,,M1\nK1,circuit,C1,,,,\n"
        "L1,streetlight,K1,56.001,12.7,50,D1\nL2,streetlight,K1,56.002,12.7,50,D2\n"
    )
    assets.import_records(conn, "testby", records, "test")
    rows = conn.execute("SELECT device_key FROM devices WHERE device_id IN ('D1', 'D2') ORDER BY device_id")
    return [r[0] for r in rows.fetchall()]


def _aggregate(conn: psycopg.Connection, width: str) -> list[tuple[object, ...]]:
    return conn.execute(
        f"""SELECT time_bucket(INTERVAL '{width}', device_time), device_key, metric_id, count(*), sum(value),
                   min(value), max(value)
            FROM telemetry GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
    ).fetchall()


def _rollup(conn: psycopg.Connection, table: str) -> list[tuple[object, ...]]:
    return conn.execute(
        f"""SELECT bucket, device_key, metric_id, n, value_sum, value_min, value_max
            FROM {table} ORDER BY 1, 2, 3"""
    ).fetchall()


def test_identical_readings_are_stored_once(conn: psycopg.Connection, devices: list[int]) -> None:
    d1, _ = devices
    batch = [Reading(d1, POWER, T0 + timedelta(minutes=i), 40.0 + i) for i in range(5)]
    first = write_readings(conn, batch + batch[:2], T0)
    assert (first.stored, first.duplicates) == (5, 2)
    again = write_readings(conn, batch, T0 + timedelta(minutes=9))
    assert (again.stored, again.duplicates) == (0, 5)
    assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (5,)


def test_latest_value_and_last_seen_follow_device_time(conn: psycopg.Connection, devices: list[int]) -> None:
    d1, _ = devices
    write_readings(conn, [Reading(d1, POWER, T0 + timedelta(minutes=30), 55.0)], T0)
    late = T0 + timedelta(hours=2)
    # An older reading replayed later must not replace the latest value, but the device was seen.
    write_readings(conn, [Reading(d1, POWER, T0, 10.0)], late)
    latest = conn.execute("SELECT device_time, value FROM telemetry_latest WHERE device_key = %s", (d1,)).fetchall()
    assert latest == [(T0 + timedelta(minutes=30), 55.0)]
    seen = conn.execute("SELECT last_seen_at FROM devices WHERE device_key = %s", (d1,)).fetchone()
    assert seen == (late,)


def test_rollups_match_the_raw_data_including_late_arrivals(conn: psycopg.Connection, devices: list[int]) -> None:
    d1, d2 = devices
    readings = [
        Reading(key, metric, T0 + timedelta(minutes=10 * i), float(i * key + metric))
        for key in (d1, d2)
        for metric in (POWER, VOLTAGE)
        for i in range(30)
    ]
    write_readings(conn, readings, T0)
    hours, days, energy = maintenance.refresh_rollups(conn)
    assert (hours, days, energy) == (5, 1, 0)
    assert _rollup(conn, "telemetry_hourly") == _aggregate(conn, "1 hour")
    assert _rollup(conn, "telemetry_daily") == _aggregate(conn, "1 day")
    assert maintenance.refresh_rollups(conn) == (0, 0, 0)

    # Store-and-forward replay: data from the previous day and into an already rolled-up hour.
    replay = [Reading(d1, POWER, T0 - timedelta(days=1) + timedelta(minutes=i), 7.0) for i in range(3)]
    replay.append(Reading(d1, POWER, T0 + timedelta(minutes=5), 1000.0))
    write_readings(conn, replay, T0 + timedelta(days=1))
    assert maintenance.refresh_rollups(conn) == (2, 2, 0)
    assert _rollup(conn, "telemetry_hourly") == _aggregate(conn, "1 hour")
    assert _rollup(conn, "telemetry_daily") == _aggregate(conn, "1 day")


def test_retention_drops_only_old_chunks(conn: psycopg.Connection, devices: list[int]) -> None:
    d1, _ = devices
    now = datetime.now(UTC)
    old = [Reading(d1, POWER, now - timedelta(days=500, minutes=i), 1.0) for i in range(3)]
    recent = [Reading(d1, POWER, now - timedelta(days=1, minutes=i), 2.0) for i in range(3)]
    write_readings(conn, old + recent, now)
    report = maintenance.maintain(conn, retention_days=395)
    assert report.path == "apache"
    assert report.chunks_dropped >= 1
    assert conn.execute("SELECT count(*), min(value), max(value) FROM telemetry").fetchone() == (3, 2.0, 2.0)
    # Rollups outlive the raw data they were computed from.
    assert conn.execute("SELECT count(*) FROM telemetry_hourly WHERE value_min = 1.0").fetchone() == (1,)


def test_maintenance_refuses_an_unmigrated_database(empty_db_url: str) -> None:
    from storage.errors import MigrationError

    with psycopg.connect(empty_db_url, autocommit=True) as c, pytest.raises(MigrationError, match="db migrate"):
        maintenance.maintain(c, retention_days=30)


def _metric(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute("SELECT metric_id FROM metrics WHERE name = %s", (name,)).fetchone()
    assert row is not None, name
    return int(row[0])


def test_energy_per_district_and_day_follows_the_rollups(conn: psycopg.Connection) -> None:
    tenants.upsert(conn, "testby", "Testby")
    records = inventory.parse_csv(
        "asset_id,kind,parent_id,lat,lon,rated_power_w,device_id,district\n"
        "L1,streetlight,,56.001,12.7,50,D1,North\nL2,streetlight,,56.002,12.7,92,D2,North\n"
        "L3,streetlight,,56.003,12.7,46,D3,\n"
    )
    assets.import_records(conn, "testby", records, "test")
    keys: dict[str, int] = dict(
        conn.execute("SELECT device_id, device_key FROM devices WHERE tenant_id = 'testby'").fetchall()
    )
    energy, burning = _metric(conn, "energy_kwh"), _metric(conn, "burning_hours_h")
    day = T0.replace(hour=0)
    # Meter readings every hour from 16:00 to 19:00 UTC: lamp n uses n/10 kWh an hour and burns every hour.
    readings = [
        Reading(keys[device], metric, day + timedelta(hours=16 + h), value)
        for n, device in enumerate(("D1", "D2", "D3"), start=1)
        for h in range(4)
        for metric, value in ((energy, 100.0 * n + h * n / 10), (burning, 1000.0 + h))
    ]
    write_readings(conn, readings, day + timedelta(hours=20))
    report = maintenance.maintain(conn, retention_days=395)
    assert (report.days_refreshed, report.energy_rows) == (1, 2)

    def rows() -> list[tuple[object, ...]]:
        return conn.execute(
            "SELECT day, district, lamps, kwh, full_power_kwh FROM energy_daily WHERE tenant_id = 'testby' "
            "ORDER BY district"
        ).fetchall()

    # Three hours of burning each; North holds L1 (0.1 kWh/h, 50 W) and L2 (0.2 kWh/h, 92 W).
    assert rows() == [
        (day, "", 1, pytest.approx(0.9), pytest.approx(3 * 46 / 0.92 / 1000)),
        (day, "North", 2, pytest.approx(0.9), pytest.approx(3 * (50 + 92) / 0.92 / 1000)),
    ]
    # A late meter reading of the same day changes that day's energy at the next maintenance.
    write_readings(conn, [Reading(keys["D1"], energy, day + timedelta(hours=21), 101.5)], day + timedelta(days=2))
    assert maintenance.maintain(conn, retention_days=395).energy_rows == 2
    assert rows()[1] == (day, "North", 2, pytest.approx(2.1), pytest.approx(3 * (50 + 92) / 0.92 / 1000))
    # Nothing pending: nothing recomputed.
    assert maintenance.maintain(conn, retention_days=395).energy_rows == 0


def test_energy_days_are_the_municipalitys_own(conn: psycopg.Connection) -> None:
    """Stockholm's 3 November begins at 23:00 UTC on the 2nd (winter time): a meter's rise after that hour counts
    for the 3rd, and each local day is the last reading less the last one before it, across midnight."""
    tenants.upsert(conn, "osterby", "Österby", "sv", "Europe/Stockholm")
    records = inventory.parse_csv(
        "asset_id,kind,lat,lon,rated_power_w,device_id,district\nL1,streetlight,59.3,18.1,92,D1,Centrum\n"
    )
    assets.import_records(conn, "osterby", records, "test")
    key = conn.execute("SELECT device_key FROM devices WHERE tenant_id = 'osterby'").fetchone()
    assert key is not None
    energy, burning = _metric(conn, "energy_kwh"), _metric(conn, "burning_hours_h")
    evening = datetime(2026, 11, 2, 20, 30, tzinfo=UTC)  # 21:30 in Stockholm
    # every hour until 03:30 UTC: the meter rises 0.1 kWh an hour, the lamp burns every hour
    readings = [
        Reading(key[0], metric, evening + timedelta(hours=h), value)
        for h in range(8)
        for metric, value in ((energy, 50.0 + 0.1 * h), (burning, 7000.0 + h))
    ]
    write_readings(conn, readings, evening + timedelta(hours=8))
    maintenance.maintain(conn, retention_days=395)
    rows = conn.execute(
        "SELECT local_day, day, lamps, kwh, burned_h FROM energy_daily WHERE tenant_id = 'osterby' ORDER BY day"
    ).fetchall()
    second, third = date(2026, 11, 2), date(2026, 11, 3)
    assert rows == [
        # 20:30, 21:30 and 22:30 UTC (up to 23:30 in Stockholm): two hours' rise within the 2nd
        (second, datetime(2026, 11, 1, 23, 0, tzinfo=UTC), 1, pytest.approx(0.2), pytest.approx(2.0)),
        # 23:30 to 03:30 UTC, each less the reading before: five hours' rise, counted from 22:30's reading
        (third, datetime(2026, 11, 2, 23, 0, tzinfo=UTC), 1, pytest.approx(0.5), pytest.approx(5.0)),
    ]
    lamp = conn.execute(
        "SELECT local_day, kwh, full_power_kwh FROM lamp_days WHERE tenant_id = 'osterby' ORDER BY local_day"
    ).fetchall()
    assert lamp == [(second, pytest.approx(0.2), pytest.approx(2 * 92 / 0.92 / 1000)),
                    (third, pytest.approx(0.5), pytest.approx(5 * 92 / 0.92 / 1000))]  # fmt: skip

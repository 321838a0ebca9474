"""TimescaleDB edition detection and both storage paths: Apache (Debian's build) and TSL (PGlite from npm)."""

from __future__ import annotations

import difflib
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from floor import inventory
from lykta import admin
from storage import assets, catalog, maintenance, migrations, tenants
from storage.editions import detect
from storage.errors import TimescaleMissing


def test_debian_build_is_detected_as_apache(conn: psycopg.Connection) -> None:
    edition = detect(conn)
    license_ = conn.execute("SHOW timescaledb.license").fetchone()
    assert license_ == ("apache",)
    assert edition.license == "apache"
    assert edition.path == "apache"
    assert edition.timescaledb_version and edition.timescaledb_version[0].isdigit()
    assert migrations.recorded_path(conn) == "apache"
    caggs = conn.execute("SELECT count(*) FROM timescaledb_information.continuous_aggregates").fetchone()
    assert caggs == (0,)
    hypertables = {r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
    assert hypertables == {"telemetry", "telemetry_hourly", "telemetry_daily"}


def test_detection_before_the_extension_exists_says_what_to_do(empty_db_url: str) -> None:
    with (
        psycopg.connect(empty_db_url, autocommit=True) as conn,
        pytest.raises(TimescaleMissing, match="db migrate"),
    ):
        detect(conn)


def test_db_info_reports_versions_edition_and_path(db_url: str) -> None:
    lines = admin.info(db_url)
    text = "\n".join(lines)
    assert lines[0].startswith("PostgreSQL 1")
    assert "license apache: Apache-2.0 edition" in text
    assert "storage path apache" in text
    assert f"schema version {len(migrations.discover())} of {len(migrations.discover())}" in text


@pytest.mark.tsl
def test_tsl_path_uses_compression_continuous_aggregates_and_policies(tsl_server: str) -> None:
    with psycopg.connect(tsl_server, autocommit=True, prepare_threshold=None) as conn:
        report = migrations.migrate(conn)
        assert report.path == "tsl"
        edition = detect(conn)
        assert (edition.license, edition.path) == ("timescale", "tsl")
        actual = catalog.describe(conn)
        expected = catalog.declared("tsl")
        assert actual == expected, "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True)))
        assert migrations.migrate(conn).applied_now == []

        # Retention becomes a policy that follows the configuration.
        result = maintenance.maintain(conn, retention_days=30)
        assert result.path == "tsl" and result.hours_refreshed == 0
        drop_after = conn.execute(
            "SELECT config->>'drop_after' FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'"
        ).fetchall()
        assert drop_after == [("30 days",)]
        maintenance.maintain(conn, retention_days=90)
        drop_after = conn.execute(
            "SELECT config->>'drop_after' FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'"
        ).fetchall()
        assert drop_after == [("90 days",)]

        # The continuous aggregates roll up what is stored (PGlite has no COPY: plain INSERT here).
        base = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
        rows = [(base + timedelta(minutes=10 * i), 1, 1, float(i), base) for i in range(12)]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO telemetry (device_time, device_key, metric_id, value, received_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                rows,
            )
        conn.execute("CALL refresh_continuous_aggregate('telemetry_hourly', NULL, NULL)")
        conn.execute("CALL refresh_continuous_aggregate('telemetry_daily', NULL, NULL)")
        hourly = conn.execute(
            "SELECT bucket, n, value_sum, value_min, value_max FROM telemetry_hourly ORDER BY bucket"
        ).fetchall()
        assert hourly == [(base, 6, 15.0, 0.0, 5.0), (base + timedelta(hours=1), 6, 51.0, 6.0, 11.0)]
        daily = conn.execute("SELECT bucket, n, value_sum, value_avg FROM telemetry_daily").fetchall()
        assert daily == [(base.replace(hour=0), 12, 66.0, 5.5)]

        # Compression works on the telemetry hypertable.
        compressed = conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('telemetry') c").fetchone()
        assert compressed == (1,)
        assert conn.execute("SELECT count(*), sum(value) FROM telemetry").fetchone() == (12, 66.0)

        # Energy per district: maintenance refreshes the day the write path marked in both aggregates, then
        # recomputes its energy (here: one lamp, meter 5.0 -> 5.6 kWh, burning 2 h at 46 W).
        tenants.upsert(conn, "testby", "Testby")
        records = inventory.parse_csv(
            "asset_id,kind,lat,lon,rated_power_w,device_id,district\nL1,streetlight,56.0,12.7,46,D1,North\n"
        )
        assets.import_records(conn, "testby", records, "test")
        later = base + timedelta(days=3)
        conn.execute(
            """INSERT INTO telemetry (device_time, device_key, metric_id, value, received_at)
               SELECT %(t)s + h * INTERVAL '1 hour', d.device_key, m.metric_id,
                      CASE m.name WHEN 'energy_kwh' THEN 5.0 + 0.3 * h ELSE 100.0 + h END, %(t)s
               FROM devices d, metrics m, generate_series(0, 2) h
               WHERE d.device_id = 'D1' AND m.name IN ('energy_kwh', 'burning_hours_h')""",
            {"t": later},
        )
        conn.execute("INSERT INTO rollup_pending VALUES (%s), (%s)", (later, later + timedelta(hours=2)))
        refreshed = maintenance.maintain(conn, retention_days=90)
        assert (refreshed.hours_refreshed, refreshed.days_refreshed, refreshed.energy_rows) == (2, 1, 1)
        energy = conn.execute("SELECT day, tenant_id, district, lamps, kwh, full_power_kwh FROM energy_daily")
        assert energy.fetchall() == [
            (later.replace(hour=0), "testby", "North", 1, pytest.approx(0.6), pytest.approx(2 * 46 / 0.92 / 1000))
        ]
        assert conn.execute("SELECT count(*) FROM rollup_pending").fetchone() == (0,)

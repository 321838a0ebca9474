"""Administrative commands over the database: migrate, info, maintain, tenants, asset import."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from floor import inventory, sun
from floor.config import Settings
from lykta import services
from storage import assets, grafana, maintenance, migrations, reports, tenants
from storage.connection import connect
from storage.editions import Edition, detect
from storage.errors import TimescaleMissing


def database_url(settings: Settings) -> str:
    return services.database_url(settings.database_url, settings.state_dir)


def migrate(url: str, retention_days: int) -> list[str]:
    with connect(url, autocommit=True) as conn:
        report = migrations.migrate(conn)
        _, retention = (
            maintenance.apply_retention(conn, report.path, retention_days)
            if report.path == "tsl"
            else (0, f"lykta db maintain drops chunks after {retention_days} days")
        )
    lines = [f"applied {name}" for name in report.applied_now] or ["schema up to date"]
    lines.append(f"schema version {report.schema_version}, storage path {report.path}; retention: {retention}")
    return lines


def info(url: str) -> list[str]:
    with connect(url, autocommit=True) as conn:
        done = migrations.applied(conn)
        path = migrations.recorded_path(conn)
        try:
            edition: Edition | None = detect(conn)
        except TimescaleMissing:
            edition = None
        pg, available = reports.server_versions(conn)
    lines = [f"PostgreSQL {pg or '?'}"]
    if edition:
        lines.append(f"TimescaleDB {edition.timescaledb_version} (license {edition.license}: {edition.name} edition)")
    else:
        lines.append(f"TimescaleDB {available or 'not installed'} (extension not created; run lykta db migrate)")
    known = len(migrations.discover())
    version = max((a.version for a in done), default=0)
    lines.append(f"schema version {version} of {known}")
    if path == "tsl":
        lines.append(
            "storage path tsl: compression, continuous aggregates (telemetry_hourly, telemetry_daily) "
            "and retention by TimescaleDB policies"
        )
    elif path == "apache":
        lines.append(
            "storage path apache: rollups (telemetry_hourly, telemetry_daily) and retention maintained "
            "by lykta db maintain"
        )
    else:
        lines.append("storage path: not chosen yet (run lykta db migrate)")
    return lines


def daylight(url: str, start: float, end: float) -> int:
    """Dawn and dusk of every tenant's days from start to end (for the dashboards); returns days written."""
    written = 0
    with connect(url, autocommit=True) as conn:
        for tenant_id, lat, lon in grafana.tenant_centres(conn):
            rows = []
            day = datetime.fromtimestamp(start, UTC).date()
            while day <= datetime.fromtimestamp(end, UTC).date():
                times = sun.switch_times(lat, lon, day)
                rows.append((day.isoformat(), times[0] if times else None, times[1] if times else None))
                day += timedelta(days=1)
            grafana.upsert_daylight(conn, tenant_id, rows)
            written += len(rows)
    return written


def maintain(url: str, retention_days: int) -> list[str]:
    now = time.time()
    days = daylight(url, now - 40 * 86400, now + 7 * 86400)
    with connect(url, autocommit=True) as conn:
        report = maintenance.maintain(conn, retention_days)
    if report.path == "apache":
        rollups = f"rollups: {report.hours_refreshed} hour(s) and {report.days_refreshed} day(s) recomputed"
        retention = f"retention: {report.chunks_dropped} chunk(s) dropped ({report.retention})"
    else:
        rollups = (
            f"rollups: continuous aggregates refreshed by TimescaleDB policies; {report.days_refreshed} day(s) "
            f"with {report.hours_refreshed} new hour(s) refreshed now"
        )
        retention = f"retention: {report.retention}"
    return [
        rollups,
        f"energy: {report.energy_rows} district-day(s) recomputed",
        retention,
        f"daylight: {days} tenant-day(s) of dawn and dusk for the dashboards",
    ]


def add_tenant(url: str, tenant_id: str, name: str, language: str, timezone: str) -> str:
    with connect(url, autocommit=True) as conn:
        t = tenants.upsert(conn, tenant_id, name, language, timezone)
    return f"tenant {t.tenant_id}: {t.name} (language {t.language}, time zone {t.timezone})"


def list_tenants(url: str) -> list[str]:
    with connect(url, autocommit=True) as conn:
        return [f"{t.tenant_id}\t{t.name}\t{t.language}\t{t.timezone}" for t in tenants.all_tenants(conn)]


def import_assets(url: str, tenant_id: str, path: Path) -> str:
    records = inventory.parse_file(path)
    with connect(url, autocommit=True) as conn:
        report = assets.import_records(conn, tenant_id, records, str(path))
    return (
        f"{path}: {len(records)} asset(s) for tenant {tenant_id}: {report.inserted} new, {report.updated} "
        f"updated, {report.unchanged} unchanged; {report.devices} device(s) bound"
    )

"""``lykta demo``: the platform on local services with the sample town of Solvik.

Services up, schema migrated, the sample inventory imported, then a simulated
week of Solvik (every fault type of examples/scenario-week.yaml, ending now)
published to the broker while ``lykta ingest`` stores it, with the ingest rate
shown as it goes. Each part of the platform adds its step here as it lands.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dashboards import grafana_sql, provision
from dashboards.build import build_all
from dashboards.grafana_sql import expand
from floor.config import Settings
from floor.errors import LyktaError
from floor.mqtt_login import local_gateway_login, local_login
from lykta import admin, demo_cases, devices, services
from lykta.broker_accounts import keep_secret, new_secret
from rules import definitions
from rules.replay import backfill, persist
from simulators.run import SimulationRequest, run_simulation
from storage import assets, grafana, reports
from storage.connection import connect

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "solvik.geojson"
SCENARIO = ROOT / "examples" / "scenario-week.yaml"
TENANT = ("solvik", "Solvik kommun", "sv", "Europe/Stockholm")


def _say(title: str, lines: list[str]) -> None:
    print(f"\n== {title}", flush=True)
    for line in lines:
        print(f"   {line}", flush=True)


def _ingest_totals(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return reports.ingest_totals(conn)


async def _watch(url: str, stop: asyncio.Event) -> None:
    last_time, last_received = time.monotonic(), (await asyncio.to_thread(_ingest_totals, url))[0]
    while not stop.is_set():
        try:
            async with asyncio.timeout(2.0):
                await stop.wait()
        except TimeoutError:
            pass
        else:
            return
        received, stored, rejected = await asyncio.to_thread(_ingest_totals, url)
        now = time.monotonic()
        rate = (received - last_received) / (now - last_time)
        last_time, last_received = now, received
        print(
            f"   ingest: {received:,} messages received, {stored:,} readings stored, {rejected:,} rejected, "
            f"{rate:,.0f} messages/s",
            flush=True,
        )


SPEED = 10_080.0  # a week in a minute


async def _simulate_week(url: str, mqtt_url: str, start: float, settings: Settings) -> float:
    """Publish the week while showing the ingest rate; return when ingest has received everything."""
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(url, stop))
    truth = Path(tempfile.gettempdir()) / "lykta-demo-ground-truth.csv"
    request = SimulationRequest(
        mqtt_url=mqtt_url,
        tenant=TENANT[0],
        fleet_file=SAMPLE,
        scenario_file=SCENARIO,
        speed=SPEED,
        start=start,
        ground_truth_file=truth,
        quiet=True,
        login=local_gateway_login(settings.state_dir, TENANT[0]) if settings.mqtt_security else None,
        ca_file=settings.mqtt_ca_file,
    )
    before = (await asyncio.to_thread(_ingest_totals, url))[0]
    began = time.monotonic()
    received = 0
    try:
        report, faults = await run_simulation(request)
        print(
            f"   simulator: published {report.publications:,} messages in {report.seconds:.1f} s, {faults} "
            f"injected faults (ground truth: {truth})",
            flush=True,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            received = (await asyncio.to_thread(_ingest_totals, url))[0] - before
            if received >= report.publications:
                break
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - began
        print(
            f"   ingest kept up: {received:,} messages in {elapsed:.1f} s from the first publish, "
            f"{received / elapsed:,.0f} messages/s",
            flush=True,
        )
    finally:
        stop.set()
        await watcher
    return report.wall_start


def _findings(url: str, start: float) -> list[str]:
    """The default rules over the simulated week, as the live service would have evaluated it, written to the
    findings table."""
    end = start + 7 * 86400
    with psycopg.connect(url) as conn:
        found = backfill(conn, definitions.load(), start, end)
        with conn.transaction():
            written = persist(conn, found, end)
    counts: dict[str, int] = {}
    for rule, _, _ in found:
        counts[rule.fault] = counts.get(rule.fault, 0) + 1
    return [f"{fault}: {n}" for fault, n in sorted(counts.items())] + [f"{written} new finding(s) stored"]


def run(settings: Settings, inventory: Path | None = None) -> int:
    inventory = inventory or SAMPLE
    security = services.security_from(settings)
    state = services.up(settings.state_dir, security=security, autosave_s=settings.mqtt_autosave_seconds)
    _say("services", services.status(settings.state_dir))
    url = admin.database_url(settings)
    mqtt_url = settings.mqtt_url or (state.mqtt.url if state.mqtt else "")
    _say("schema", admin.migrate(url, settings.retention_days))
    _say("database", admin.info(url))
    tenant_id, name, language, timezone = TENANT
    _say("tenant", [admin.add_tenant(url, tenant_id, name, language, timezone)])
    _say("inventory", [admin.import_assets(url, tenant_id, inventory)])
    with connect(url) as conn:
        summary = assets.summary(conn, tenant_id)
    _say("assets", [f"{kind}: {n}" for kind, n in summary.assets_by_kind.items()] + [f"devices: {summary.devices}"])
    login: dict[str, str] = {}
    if security is not None and security.authenticate:
        request = devices.ProvisionRequest(tenant=tenant_id, gateway=True, ca_file=settings.mqtt_ca_file)
        _say("broker accounts (lykta devices provision --gateway)", devices.provision(url, settings.state_dir, request))
        ingest_login = local_login(settings.state_dir)
        if ingest_login is None:
            raise LyktaError("the ingest account was not provisioned")
        login = {"LYKTA_MQTT_USERNAME": ingest_login[0], "LYKTA_MQTT_PASSWORD": ingest_login[1]}

    env = {
        **os.environ,
        "LYKTA_DATABASE_URL": url,
        "LYKTA_MQTT_URL": mqtt_url,
        "LYKTA_INGEST_METRICS_PORT": "0",
        "LYKTA_INGEST_STATS_INTERVAL_S": "1",
        "LYKTA_INGEST_CLIENT_ID": "lykta-demo-ingest",
        "LYKTA_LOG_LEVEL": "WARNING",
        **login,
    }
    _say("ingest", ["lykta ingest --workers 2 (one process per core, each storing its partition of the devices)"])
    ingest = subprocess.Popen([sys.executable, "-m", "lykta.cli", "ingest", "--workers", "2"], env=env)
    try:
        time.sleep(2.0)
        if ingest.poll() is not None:
            raise LyktaError(f"lykta ingest exited with {ingest.returncode}")
        _say("a simulated week of Solvik, ending now, published at a week per minute", [])
        start = time.time() - 7 * 86400 - 120
        asyncio.run(_simulate_week(url, mqtt_url, start, settings))
        time.sleep(1.5)  # the last statistics interval
    finally:
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(60)
    _say("stored", _stored(url))
    _say("findings of the default rules over the week (lykta rules)", _findings(url, start))
    demo_cases.run(settings, url, tenant_id, _say)
    _say("rollups and daylight (lykta db maintain)", admin.maintain(url, settings.retention_days))
    _say("Grafana dashboards (lykta dashboards build)", _dashboards(settings, url))
    sign_in = demo_cases.operator_account(url, tenant_id)
    lykta = f"lykta --state-dir {settings.state_dir}"
    print(f"\nThe services keep running; stop them with: {lykta} services down")
    print(
        f"The operator console: start the API with `{lykta} api`, then open "
        f"http://{settings.api_host}:{settings.api_port}/console and sign in as {sign_in}"
    )
    return 0


def _stored(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        s = reports.stored_summary(conn)
    return [
        f"{s.readings:,} readings from {s.devices} devices",
        f"{s.offline} offline announcements (a Last Will, or the gateway for its device)",
        "events: " + (", ".join(f"{e} x{n}" for e, n in s.events) or "none"),
        "dead letters: " + (", ".join(f"{r} x{n}" for r, n in s.dead_letters) or "none"),
    ]


def _dashboards(settings: Settings, url: str) -> list[str]:
    """Write the dashboards and provisioning files for this database, make Solvik's reader role, then run every
    panel's query as Grafana would: as that role."""
    out = settings.state_dir / "grafana"
    where = conninfo_to_dict(url)
    role = grafana.reader_role(TENANT[0])
    secret = settings.state_dir / "secrets" / f"grafana-db-{TENANT[0]}"
    if not secret.exists():
        keep_secret(secret, new_secret())
    password = secret.read_text().strip()
    with psycopg.connect(url, autocommit=True) as conn:
        grafana.ensure_reader(conn, role, password, TENANT[0])
    target = provision.Target(
        str(where.get("host", "127.0.0.1")), int(str(where.get("port", 5432))), str(where["dbname"]), user=role
    )
    provision.build(out, target, settings.api_public_url)
    end = datetime.now(UTC)
    lines = [
        f"written to {out} (see docs/dashboards.md); data source {target.host}:{target.port}/{target.database} "
        f"as {role} (password in {secret})"
    ]
    with psycopg.connect(url) as conn:
        variables = grafana_sql.everything(conn, TENANT[0], reports.a_failed_lamp(conn) or "SL-0001")
    with psycopg.connect(make_conninfo(url, user=role, password=password)) as conn:
        for doc in build_all().values():
            counts = []
            for panel in doc["panels"]:
                for query in panel.get("targets", []):
                    sql = expand(query["rawSql"], time_from=end - timedelta(days=7), time_to=end, interval_s=3600,
                                 variables=variables)  # fmt: skip
                    counts.append(len(conn.execute(sql).fetchall()))
            lines.append(f"{doc['title']}: {len(counts)} panels, rows per panel over the week: {counts}")
    return lines

"""The ``lykta`` command line: parses arguments, configures logging, runs one function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from floor import config, logs
from floor.errors import LyktaError
from lykta import cli_dashboards, cli_maintenance

Command = Callable[[config.Settings, argparse.Namespace], int]


def _services(settings: config.Settings, args: argparse.Namespace) -> int:
    from lykta import services

    if args.action == "up":
        security = services.security_from(settings, anonymous=args.anonymous)
        state = services.up(
            settings.state_dir,
            ephemeral=args.ephemeral,
            security=security,
            autosave_s=settings.mqtt_autosave_seconds,
            high_availability=args.ha,
        )
        for line in services.describe(state, settings.state_dir):
            print(line)
        print(f"connection settings recorded in {settings.services_file}")
    elif args.action == "down":
        for line in services.down(settings.state_dir):
            print(line)
    else:
        lines = services.status(settings.state_dir)
        for line in lines:
            print(line)
        return 0 if all(" running" in line for line in lines) else 3
    return 0


def _devices(settings: config.Settings, args: argparse.Namespace) -> int:
    from lykta import admin, devices

    request = devices.ProvisionRequest(
        tenant=args.tenant,
        devices=tuple(args.device or ()),
        all_devices=args.all,
        rotate=args.rotate,
        gateway=args.gateway,
        ingest=args.ingest,
        secrets=Path(args.secrets) if args.secrets else None,
        broker_dir=Path(args.broker_dir) if args.broker_dir else None,
        ca_file=settings.mqtt_ca_file,
    )
    for line in devices.provision(admin.database_url(settings), settings.state_dir, request):
        print(line)
    return 0


def _db(settings: config.Settings, args: argparse.Namespace) -> int:
    from lykta import admin

    if args.action in ("backup", "restore"):
        return _backup(settings, args)
    url = admin.database_url(settings)
    if args.action == "migrate":
        for line in admin.migrate(url, settings.retention_days):
            print(line)
    elif args.action == "info":
        for line in admin.info(url):
            print(line)
    else:
        for line in admin.maintain(url, settings.retention_days):
            print(line)
    return 0


def _backup(settings: config.Settings, args: argparse.Namespace) -> int:
    import time

    from lykta import backup, services

    recorded = services.ServiceState.load(settings.state_dir).postgres  # None: the cluster of services up --ha
    if recorded is None and not (settings.state_dir / "ha" / "cluster.json").exists():
        raise LyktaError(
            f"no local database in {settings.state_dir}: lykta db backup works on the database of `lykta services "
            "up` (or up --ha); for other clusters, configure pgBackRest as docs/operations.md shows"
        )
    if args.action == "backup":
        for line in backup.backup(settings.state_dir, recorded, args.kind):
            print(line)
        return 0
    into = Path(args.into) if args.into else settings.state_dir / f"restored-{int(time.time())}"
    info = backup.restore(settings.state_dir, args.to, into)
    print(f"restored into {into}: running on 127.0.0.1:{info.port} (pid {info.pid})")
    print(f"connect with: {info.url()}")
    return 0


def _tenants(settings: config.Settings, args: argparse.Namespace) -> int:
    from lykta import admin

    url = admin.database_url(settings)
    if args.action == "add":
        print(admin.add_tenant(url, args.tenant_id, args.name or args.tenant_id, args.language, args.timezone))
    else:
        for line in admin.list_tenants(url):
            print(line)
    return 0


def _assets(settings: config.Settings, args: argparse.Namespace) -> int:
    from lykta import admin

    print(admin.import_assets(admin.database_url(settings), args.tenant, Path(args.file)))
    return 0


def _ingest(settings: config.Settings, args: argparse.Namespace) -> int:
    import asyncio

    from ingest import service, workers
    from lykta import services

    database_url = services.database_url(settings.database_url, settings.state_dir)
    mqtt_url = services.mqtt_url(settings.mqtt_url, settings.state_dir)
    if args.workers > 1:
        return workers.supervise(settings, args.workers, sys.argv[1:])
    asyncio.run(service.run(settings, database_url, mqtt_url))
    return 0


def _simulate(settings: config.Settings, args: argparse.Namespace) -> int:
    import asyncio
    import time
    from datetime import datetime

    from floor.mqtt_login import client_login
    from lykta import services
    from simulators import run
    from simulators.scenario import ScenarioError, parse_span

    mqtt_url = services.mqtt_url(settings.mqtt_url, settings.state_dir)
    if args.load:
        from simulators.fleet import from_file

        devices = (
            [
                d.device_id
                for d in from_file(Path(args.fleet), args.tenant, 1).devices
                if d.kind == "streetlight_controller"
            ]
            if args.fleet
            else [f"SLC-{n:04d}" for n in range(1, 245)]
        )
        sent, seconds = asyncio.run(
            run.run_load_mode(
                mqtt_url,
                args.tenant,
                devices,
                args.messages,
                args.connections,
                args.rate,
                login=client_login(settings, local_ingest=False, tenant=args.tenant),
                ca_file=settings.mqtt_ca_file,
            )
        )
        print(f"load: {sent:,} messages acknowledged by the broker in {seconds:.1f} s ({sent / seconds:,.0f}/s)")
        return 0
    try:
        duration = parse_span(args.duration, "--duration") if args.duration else None
    except ScenarioError as exc:
        raise LyktaError(str(exc)) from None
    start = end = None
    if args.start == "now":  # the scenario ends now: its own duration (or --duration) before
        end = time.time()
    elif args.start:
        try:
            start = datetime.fromisoformat(args.start).timestamp()
        except ValueError:
            raise LyktaError(f"--start {args.start!r} is not an ISO time or 'now'") from None
    request = run.SimulationRequest(
        mqtt_url=mqtt_url,
        tenant=args.tenant,
        fleet_file=Path(args.fleet) if args.fleet else None,
        generate=args.generate,
        scenario_file=Path(args.scenario) if args.scenario else None,
        speed=None if args.asap else args.speed,
        duration=duration,
        start=start,
        end=end,
        seed=args.seed,
        ground_truth_file=Path(args.ground_truth) if args.ground_truth else None,
        login=client_login(settings, local_ingest=False, tenant=args.tenant),
        ca_file=settings.mqtt_ca_file,
    )
    report, faults = asyncio.run(run.run_simulation(request))
    print(
        f"published {report.publications:,} messages in {report.seconds:.1f} s; {faults} injected fault(s)"
        + (f", ground truth in {args.ground_truth}" if args.ground_truth else "")
    )
    return 0


def _demo(settings: config.Settings, args: argparse.Namespace) -> int:
    from lykta import demo

    return demo.run(settings, inventory=Path(args.inventory) if args.inventory else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lykta",
        description="lykta: street lighting and city infrastructure telemetry, faults and maintenance.",
        epilog="environment variables:\n" + config.describe_environment(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="TOML configuration file (also LYKTA_CONFIG)")
    parser.add_argument("--state-dir", help="state directory of the local services (also LYKTA_STATE_DIR)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (also LYKTA_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("services", help="start, stop or show the local PostgreSQL and Mosquitto")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument(
        "--ephemeral",
        action="store_true",
        help="trade durability for speed (fsync off): for tests and benchmarks only",
    )
    p.add_argument(
        "--anonymous",
        action="store_true",
        help="let any client use the broker without an account (like mqtt_security = false): never in production",
    )
    p.add_argument(
        "--ha",
        action="store_true",
        help="up: the database as three PostgreSQL members under Patroni and etcd, synchronous (docs/operations.md)",
    )
    p.set_defaults(func=_services)

    p = sub.add_parser("db", help="database schema and maintenance")
    p.add_argument(
        "action",
        choices=["migrate", "info", "maintain", "backup", "restore"],
        help="migrate: apply pending migrations; info: versions, edition and storage path; "
        "maintain: refresh rollups and apply retention where lykta does it; backup: a pgBackRest backup of the "
        "local cluster (WAL archived continuously from then on); restore: the drill, into a fresh cluster",
    )
    p.add_argument("--kind", default="full", choices=["full", "diff", "incr"], help="backup: its kind")
    p.add_argument("--to", help="restore: the point in time (e.g. '2026-12-02 07:30:00+00'; default: the latest)")
    p.add_argument("--into", help="restore: a fresh directory for the restored cluster")
    p.set_defaults(func=_db)

    p = sub.add_parser("tenants", help="municipalities sharing this installation")
    p.add_argument("action", choices=["add", "list"])
    p.add_argument("tenant_id", nargs="?", help="tenant id (for add), e.g. ljusdala")
    p.add_argument("--name", help="display name (for add)")
    p.add_argument("--language", default="en", choices=["en", "sv", "pt"], help="language of work orders")
    p.add_argument("--timezone", default="UTC", help="IANA time zone, e.g. Europe/Stockholm")
    p.set_defaults(func=_tenants)

    p = sub.add_parser("assets", help="asset inventory")
    asub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = asub.add_parser("import", help="import a GeoJSON or CSV inventory, all or nothing")
    imp.add_argument("file")
    imp.add_argument("--tenant", required=True, help="tenant the assets belong to")
    p.set_defaults(func=_assets)

    p = sub.add_parser("devices", help="broker accounts of devices, gateways and ingest (docs/security.md)")
    p.add_argument("action", choices=["provision"])
    p.add_argument("--tenant", help="the municipality of the devices or gateway")
    p.add_argument("--device", action="append", help="a device id (repeatable)")
    p.add_argument("--all", action="store_true", help="every device of the tenant that is not retired")
    p.add_argument("--rotate", action="store_true", help="new passwords for devices that already have one")
    p.add_argument("--gateway", action="store_true", help="the tenant's gateway account (new password)")
    p.add_argument("--ingest", action="store_true", help="the ingest service's account (new password)")
    p.add_argument("--secrets", help="CSV file for the new passwords, created with mode 0600 (must not exist)")
    p.add_argument("--broker-dir", help="write the password file and ACL here (default: the local broker's)")
    p.set_defaults(func=_devices)

    p = sub.add_parser("ingest", help="receive telemetry from the broker and store it (runs until SIGTERM)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the subscription (default 1); each gets client id <id>-<n> and metrics port <port>+<n>",
    )
    p.set_defaults(func=_ingest)

    p = sub.add_parser("simulate", help="publish a simulated city (or a fixed load) to the broker")
    p.add_argument("--fleet", help="inventory file (GeoJSON or CSV) whose devices to simulate")
    p.add_argument(
        "--generate",
        type=int,
        default=2000,
        help="without --fleet: generate a town with about this many streetlights (default 2000)",
    )
    p.add_argument("--tenant", default="solvik", help="tenant in the topics (default solvik)")
    p.add_argument("--scenario", help="scenario file (YAML) with start, duration and faults")
    p.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulated seconds per second (default 60; a week in a minute is 10080)",
    )
    p.add_argument("--asap", action="store_true", help="as fast as possible, no pacing")
    p.add_argument("--duration", help="override the scenario's duration, e.g. 7d, 12h")
    p.add_argument("--start", help="override the scenario's start: an ISO time, or 'now' to end now")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--ground-truth", help="write the injected faults to this CSV file")
    p.add_argument("--load", action="store_true", help="load mode: a fixed number of streetlight messages")
    p.add_argument("--messages", type=int, default=100_000, help="load mode: messages (default 100000)")
    p.add_argument("--connections", type=int, default=1, help="load mode: connections (default 1)")
    p.add_argument("--rate", type=float, default=0.0, help="load mode: messages per second, 0 = maximum")
    p.set_defaults(func=_simulate)

    cli_maintenance.add_commands(sub)
    cli_dashboards.add_commands(sub)

    p = sub.add_parser("demo", help="run the platform on local services with the sample city")
    p.add_argument("--inventory", help="inventory file (default: the sample in examples/)")
    p.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "tenants" and args.action == "add" and not args.tenant_id:
        parser.error("tenants add needs a tenant id")
    database_url: str | None = None
    try:
        settings = config.load(args.config, state_dir=args.state_dir, log_level=args.log_level)
        database_url = settings.database_url
        logs.configure(settings.log_level, settings.log_format)
        func: Command = args.func
        return func(settings, args)
    except LyktaError as exc:
        print(f"lykta: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        problem = _database_problem(exc, database_url)
        if problem is None:
            raise
        print(f"lykta: error: {problem}", file=sys.stderr)
        return 1


def _database_problem(exc: Exception, url: str | None) -> str | None:
    """A clear line for database errors that reach the top (passwords removed), None for anything else."""
    import psycopg

    from floor.errors import first_line
    from storage.connection import redact

    first = first_line(exc)
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction):
        return f"the database schema is not up to date ({redact(first)}); run lykta db migrate"
    if isinstance(exc, psycopg.OperationalError):
        where = f" {redact(url)}" if url else ""
        return f"cannot connect to{where}: {redact(first)}"
    if isinstance(exc, psycopg.Error):
        return f"database error: {redact(first)}"
    return None


if __name__ == "__main__":
    sys.exit(main())

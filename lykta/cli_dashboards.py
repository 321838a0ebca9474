"""``lykta dashboards build|publish``: Grafana dashboards as files for provisioning, or pushed to a server."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from floor import config
from floor.errors import LyktaError


def _dashboards(settings: config.Settings, args: argparse.Namespace) -> int:
    import os

    from dashboards import provision

    if args.action == "publish":
        token = args.token or os.environ.get("LYKTA_GRAFANA_TOKEN")
        if not args.url or not token:
            raise LyktaError("dashboards publish needs --url and --token (or LYKTA_GRAFANA_TOKEN)")
        if not args.url.startswith(("http://", "https://")):
            raise LyktaError(f"--url {args.url!r}: expected an http:// or https:// URL")
        for answer in provision.publish(args.url, token, console=settings.api_public_url):
            print(f"published {answer.get('uid')} (version {answer.get('version')}): {answer.get('status')}")
        return 0
    if not args.out:
        raise LyktaError("dashboards build needs --out DIR")
    from urllib.parse import urlparse

    from lykta import admin
    from storage.grafana import reader_role

    url = None
    try:
        url = admin.database_url(settings)
    except LyktaError:
        if args.create_role:
            raise
    parsed = urlparse(url) if url else None
    try:
        user = reader_role(args.tenant)
    except ValueError as exc:
        raise LyktaError(str(exc)) from None
    target = provision.Target(
        host=args.db_host or (parsed.hostname if parsed and parsed.hostname else "127.0.0.1"),
        port=args.db_port or (parsed.port if parsed and parsed.port else 5432),
        database=args.db_name or (parsed.path.lstrip("/") if parsed and parsed.path else "lykta"),
        sslmode=args.sslmode,
        dashboards_path=args.dashboards_path,
        user=user,
    )
    for path in provision.build(Path(args.out), target, settings.api_public_url):
        print(f"wrote {path}")
    if args.create_role:
        from storage import grafana
        from storage.connection import connect

        password = os.environ.get("LYKTA_GRAFANA_DB_PASSWORD")
        if not password or url is None:
            raise LyktaError("--create-role needs the role's password in LYKTA_GRAFANA_DB_PASSWORD")
        with connect(url, autocommit=True) as conn:
            grafana.ensure_reader(conn, target.user, password, args.tenant)
        scope = f"municipality {args.tenant}" if args.tenant else "every municipality"
        print(f"read-only role {target.user} ready ({scope})")
    return 0


def add_commands(sub: Any) -> None:
    """Register the command on the ``lykta`` parser's subcommands."""
    p = sub.add_parser("dashboards", help="Grafana dashboards: files for provisioning, or publish to a server")
    p.add_argument("action", choices=["build", "publish"])
    p.add_argument("--out", help="build: output directory")
    p.add_argument("--db-host", help="build: database host as Grafana sees it (default: from the database URL)")
    p.add_argument("--db-port", type=int, help="build: database port as Grafana sees it")
    p.add_argument("--db-name", help="build: database name")
    p.add_argument("--sslmode", default="disable", choices=["disable", "require", "verify-ca", "verify-full"])
    p.add_argument(
        "--dashboards-path",
        default="/var/lib/grafana/dashboards/lykta",
        help="build: where the Grafana server finds the dashboard files",
    )
    p.add_argument(
        "--create-role",
        action="store_true",
        help="build: create or update the read-only role (password from LYKTA_GRAFANA_DB_PASSWORD)",
    )
    p.add_argument(
        "--tenant",
        help="build: for one municipality's Grafana: its role lykta_grafana_<tenant> sees only its data "
        "(default: lykta_grafana, the whole installation)",
    )
    p.add_argument("--url", help="publish: Grafana's URL, e.g. https://grafana.example.org")
    p.add_argument("--token", help="publish: a service account token (or LYKTA_GRAFANA_TOKEN)")
    p.set_defaults(func=_dashboards)

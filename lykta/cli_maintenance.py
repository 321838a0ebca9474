"""``lykta rules|cases|crews|operators|tokens|api``: the commands of fault detection and maintenance work."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from floor import config
from floor.errors import LyktaError

if TYPE_CHECKING:
    from cases.policy import Policies


def _rules(settings: config.Settings, args: argparse.Namespace) -> int:
    import asyncio
    import time
    from datetime import UTC, datetime

    from lykta import admin
    from rules import service
    from rules.evaluate import Shard

    def when(text: str) -> float:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise LyktaError(f"{text!r} is not an ISO time such as 2026-11-02T12:00:00Z") from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()

    try:
        k, n = (int(x) for x in args.shard.split("/"))
        shard = Shard(k, n)
    except ValueError:
        raise LyktaError(f"--shard {args.shard!r}: use k/N with 0 <= k < N, e.g. 0/2") from None
    url = admin.database_url(settings)
    files = [Path(f) for f in args.rules or []]
    if args.action == "backtest":
        if not args.start or not args.end:
            raise LyktaError("rules backtest needs --from and --to")
        found = service.backtest(url, files, when(args.start), when(args.end), step_s=args.step, shard=shard)
        for f in sorted(found, key=lambda f: f.observed_at):
            end = datetime.fromtimestamp(f.cleared_at, UTC).isoformat() if f.cleared_at else "open"
            print(
                f"{datetime.fromtimestamp(f.observed_at, UTC).isoformat()}  {end:<25}  {f.severity:<8}  "
                f"{f.fault:<22} {f.tenant_id}/{f.asset_id}  ({f.rule_id})"
            )
        print(f"{len(found)} finding(s)")
        return 0
    if args.once:
        outcome = service.run_once(url, files, when(args.as_of) if args.as_of else time.time(), shard)
        print(f"findings: {outcome.opened} opened, {outcome.kept} still open, {outcome.cleared} cleared")
        return 0
    asyncio.run(service.run_every(url, files, args.every, shard))
    return 0


def _policies(settings: config.Settings, extra: list[str] | None) -> Policies:
    from cases.errors import PolicyError
    from cases.policy import Policies

    files = [Path(f.strip()) for f in (settings.cases_policy or "").split(",") if f.strip()]
    files += [Path(f) for f in extra or []]
    try:
        return Policies(files)
    except PolicyError as exc:
        raise LyktaError(str(exc)) from None


def _cases(settings: config.Settings, args: argparse.Namespace) -> int:
    import asyncio
    import time

    from cases import admin as cases_admin
    from cases import service
    from lykta import admin

    url = admin.database_url(settings)
    policies = _policies(settings, args.policy)
    if args.action == "list":
        for line in cases_admin.list_cases(url, args.tenant, args.status):
            print(line)
        return 0
    if args.action == "reports":
        for line in cases_admin.list_reports(url, args.tenant, args.triage):
            print(line)
        return 0
    if args.once:
        print(f"cases: {service.run_once(url, policies, settings, time.time())}")
        return 0
    asyncio.run(service.run_every(url, policies, settings, args.every))
    return 0


def _crews(settings: config.Settings, args: argparse.Namespace) -> int:
    from cases import admin as cases_admin
    from lykta import admin

    url = admin.database_url(settings)
    if args.action == "add":
        if not args.crew_id:
            raise LyktaError("crews add needs a crew id")
        print(
            cases_admin.add_crew(
                url,
                args.tenant,
                args.crew_id,
                args.name or args.crew_id,
                args.email,
                args.webhook,
                args.secret,
                args.areas,
                args.skills,
            )
        )
    else:
        for line in cases_admin.list_crews(url, args.tenant):
            print(line)
    return 0


def _operators(settings: config.Settings, args: argparse.Namespace) -> int:
    import sys

    from cases import admin as cases_admin
    from lykta import admin

    url = admin.database_url(settings)
    if args.action == "add":
        if not args.email or not args.name:
            raise LyktaError("operators add needs --email and --name")
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
        print(cases_admin.add_operator(url, args.email, args.name, args.tenant or [], password))
    elif args.action == "disable":
        if not args.email:
            raise LyktaError("operators disable needs --email")
        print(cases_admin.disable_operator(url, args.email))
    else:
        for line in cases_admin.list_operators(url):
            print(line)
    return 0


def _tokens(settings: config.Settings, args: argparse.Namespace) -> int:
    from cases import admin as cases_admin
    from lykta import admin

    url = admin.database_url(settings)
    if args.action == "create":
        if not args.tenant:
            raise LyktaError("tokens create needs --tenant")
        print(cases_admin.create_token(url, args.tenant, args.role, args.crew, args.label or "", args.days))
    else:
        if not args.token:
            raise LyktaError("tokens revoke needs the token")
        print(cases_admin.revoke_token(url, args.token))
    return 0


def _api(settings: config.Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from cases.api import create_app
    from lykta import admin

    policies = _policies(settings, args.policy)
    app = create_app(
        admin.database_url(settings),
        policies,
        pool_size=settings.api_connections,
        queue=settings.api_queue,
        queue_wait_s=settings.api_queue_wait_s,
        public_url=settings.api_public_url,
        map_tiles=settings.map_tiles,
        grafana_url=settings.grafana_url,
    )
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level=settings.log_level.lower())
    return 0


def add_commands(sub: Any) -> None:
    """Register the commands on the ``lykta`` parser's subcommands."""
    p = sub.add_parser("rules", help="detect faults from stored telemetry")
    p.add_argument("action", choices=["run", "backtest"])
    p.add_argument("--rules", action="append", help="rule file overriding the defaults (repeatable)")
    p.add_argument("--once", action="store_true", help="run: evaluate once and exit")
    p.add_argument("--every", type=float, default=60.0, help="run: seconds between evaluations (default 60)")
    p.add_argument("--as-of", help="run --once: evaluate as of this device time (ISO; default now)")
    p.add_argument("--shard", default="0/1", help="evaluate the devices of shard k of N (default 0/1)")
    p.add_argument("--from", dest="start", help="backtest: first evaluation time (ISO)")
    p.add_argument("--to", dest="end", help="backtest: last evaluation time (ISO)")
    p.add_argument(
        "--step",
        type=float,
        default=21600.0,
        help="backtest: seconds of device time read at once (default 21600); every reading is judged whatever the step",
    )
    p.set_defaults(func=_rules)

    p = sub.add_parser("cases", help="turn findings into cases and work orders; deliver messages")
    p.add_argument("action", choices=["run", "list", "reports"])
    p.add_argument("--policy", action="append", help="policy file over the defaults (repeatable)")
    p.add_argument("--once", action="store_true", help="run: one cycle and exit")
    p.add_argument("--every", type=float, default=10.0, help="run: seconds between cycles (default 10)")
    p.add_argument("--tenant", help="list: this tenant only")
    p.add_argument("--status", default="active", help="list: open, in_repair, verifying, resolved or active")
    p.add_argument("--triage", help="reports: inbox (waiting for an operator), attached or dismissed")
    p.set_defaults(func=_cases)

    p = sub.add_parser("crews", help="crews that receive work orders")
    p.add_argument("action", choices=["add", "list"])
    p.add_argument("tenant", help="tenant id")
    p.add_argument("crew_id", nargs="?", help="crew id (for add), e.g. ljus-norr")
    p.add_argument("--name", help="display name")
    p.add_argument("--email", help="where work orders are mailed")
    p.add_argument("--webhook", help="where work orders are posted (JSON, signed)")
    p.add_argument("--secret", help="HMAC secret of the webhook")
    p.add_argument("--areas", help="maintenance areas served, comma-separated (default: all)")
    p.add_argument("--skills", help="skills, comma-separated, e.g. lighting,electrical (default: any)")
    p.set_defaults(func=_crews)

    p = sub.add_parser("operators", help="people who sign in to the operator console (lykta api: /console)")
    p.add_argument("action", choices=["add", "list", "disable"])
    p.add_argument("--email", help="add, disable: the person's e-mail address (their sign-in)")
    p.add_argument("--name", help="add: the person's name")
    p.add_argument("--tenant", action="append", help="add: a municipality they work for (repeatable)")
    p.add_argument(
        "--password-stdin", action="store_true", help="add: read the password from standard input (else one is made)"
    )
    p.set_defaults(func=_operators)

    p = sub.add_parser("tokens", help="API tokens of operators, crew members and Open311 applications")
    p.add_argument("action", choices=["create", "revoke"])
    p.add_argument("token", nargs="?", help="revoke: the token")
    p.add_argument("--tenant", help="create: the tenant the token belongs to")
    p.add_argument("--role", default="operator", choices=["operator", "crew", "app"], help="app: an Open311 api_key")
    p.add_argument("--crew", help="create --role crew: the crew id")
    p.add_argument("--label", help="create: whose token it is (a crew token is one person's: name them)")
    p.add_argument("--days", type=int, help="create: days the token is valid (default: crew 90, others 365)")
    p.set_defaults(func=_tokens)

    p = sub.add_parser("api", help="serve the HTTP API, the crew page and Open311 (runs until SIGTERM)")
    p.add_argument("--policy", action="append", help="policy file over the defaults (repeatable)")
    p.set_defaults(func=_api)

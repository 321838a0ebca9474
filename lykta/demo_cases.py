"""The maintenance part of ``lykta demo``: crews, cases and work orders from the week's findings, messages
delivered to a local mail catcher and webhook receiver, a crew working through the API, and a citizen report
through Open311."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from aiosmtpd.controller import Controller

from cases import admin as cases_admin
from cases import service as cases_service
from cases.policy import Policies
from floor.config import Settings
from lykta.process import free_port
from storage import cases as store
from storage import reports

CREWS = [
    ("ljus-norr", "Ljus Norr AB", "Norr", "lighting"),
    ("ljus-syd", "Syd Belysning", "Syd", "lighting"),
    ("el", "Elteknik i Solvik", "", "electrical"),
    ("va", "VA-jouren", "", "drainage"),
    ("avfall", "Renhållningen", "", "waste"),
    ("vag", "Vägservice", "", "roads"),
]


class _Mail:
    def __init__(self) -> None:
        self.received: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"


@contextmanager
def _catchers() -> Iterator[tuple[int, _Mail, int, list[str]]]:
    """A local mail catcher and webhook receiver standing in for the crews' inboxes and systems."""
    mail = _Mail()
    smtp_port = free_port()
    controller = Controller(mail, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    hooks: list[str] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hooks.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield smtp_port, mail, server.server_address[1], hooks
    finally:
        server.shutdown()
        server.server_close()
        controller.stop()


def _http(
    method: str, url: str, token: str | None = None, body: dict[str, Any] | None = None, form: bool = False
) -> Any:
    data = None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def run(settings: Settings, url: str, tenant_id: str, say: Any) -> None:
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd narrates every SMTP command at INFO
    now = time.time()
    with _catchers() as (smtp_port, mail, hook_port, hooks):
        for crew_id, name, area, skill in CREWS:
            cases_admin.add_crew(
                url, tenant_id, crew_id, name, f"{crew_id}@crews.solvik.example",
                f"http://127.0.0.1:{hook_port}/{crew_id}", "demo-secret", area or None, skill,
            )  # fmt: skip
        say("crews", [f"{c[0]}: {c[1]} ({c[3]}{', area ' + c[2] if c[2] else ''})" for c in CREWS])
        local = replace(settings, smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_from="lykta@solvik.example")
        cycle = cases_service.run_once(url, Policies(), local, now)
        say(
            "cases from the findings (lykta cases run)",
            [
                f"{cycle.findings} findings handled: {cycle.opened} cases opened, {cycle.merged} merged into "
                f"correlated cases, {cycle.resolved} resolved",
                *_case_summary(url, tenant_id),
                f"delivered: {cycle.sent} messages ({len(mail.received)} e-mails, {len(hooks)} webhooks), "
                f"{cycle.retrying} to retry",
            ],
        )
        _api_walkthrough(settings, url, tenant_id, local)


def operator_account(url: str, tenant_id: str) -> str:
    """The demo's operator, for the console: ``<e-mail> with password <password>`` (a new password each run)."""
    email = f"operator@{tenant_id}.example"
    made = cases_admin.add_operator(url, email, "Demo Operator", [tenant_id], None)
    return f"{email} with password {made.rsplit(' ', 1)[-1]}"


def _case_summary(url: str, tenant_id: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows, orders = reports.case_summary(conn, tenant_id)
    return [f"case {s:<9} {p:<9} {f:<22} x{n}" for s, p, f, n in rows] + [
        f"work orders of {crew:<10} {status:<11} x{n}" for crew, status, n in orders
    ]


def _api_walkthrough(settings: Settings, url: str, tenant_id: str, local: Settings) -> None:
    port = free_port()
    env = {**os.environ, "LYKTA_DATABASE_URL": url, "LYKTA_API_PORT": str(port), "LYKTA_LOG_LEVEL": "WARNING"}
    api = subprocess.Popen([sys.executable, "-m", "lykta.cli", "api"], env=env)
    base = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _http("GET", base + "/openapi.json")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or api.poll() is not None:
                    raise
                time.sleep(0.2)
        crew = cases_admin.create_token(url, tenant_id, "crew", "ljus-norr", "demo")
        orders = _http("GET", base + "/api/v1/work-orders?status=assigned", crew)
        lines.append(f"GET /api/v1/work-orders as ljus-norr: {len(orders)} assigned")
        if orders:
            first = orders[0]
            _http("POST", f"{base}/api/v1/work-orders/{first['work_order_id']}/accept", crew, {})
            done = _http(
                "POST", f"{base}/api/v1/work-orders/{first['work_order_id']}/done", crew, {"note": "lamp replaced"}
            )
            lines.append(
                f"work order #{first['work_order_id']} ({first['title']}) accepted and done: "
                f"case now {done['case_status']} (the next night's telemetry will verify it)"
            )
        with psycopg.connect(url) as conn:
            row = reports.open_streetlight_case(conn, tenant_id)
        if row is not None:
            report = _http(
                "POST",
                base + "/open311/v2/requests.json",
                body={
                    "service_code": "streetlight-out",
                    "lat": row[0],
                    "long": row[1],
                    "description": "Lampan är släckt",
                },
                form=True,
            )
            rid = report[0]["service_request_id"]
            status = _http("GET", f"{base}/open311/v2/requests/{rid}.json")[0]
            with psycopg.connect(url) as conn:
                attached = reports.case_of_request(conn, int(rid))
            lines.append(
                f"Open311 report #{rid} next to {row[3]}: joined case #{attached if attached is not None else '-'} "
                f"(the case already open there: #{row[2]}); the reporter sees status {status['status']!r}"
            )
        with psycopg.connect(url) as conn:
            events = store.events(conn, int(orders[0]["case_id"])) if orders else []
        lines += [f"  event {e.action:<18} by {e.actor}" for e in events]
        operator = cases_admin.create_token(url, tenant_id, "operator", None, "demo")
        lines.append(
            f"crew page: {base}/crew (a crew member signs in with a personal token: "
            "lykta tokens create --role crew --crew ... --label 'their name')"
        )
        lines.append(
            f"citizens report at {base}/report/{tenant_id} and follow their report there; "
            f"Open311 at {base}/open311/discovery.json"
        )
        lines.append(f"operator token for this demo: {operator[:8]}... (OpenAPI at {base}/docs)")
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(30)
    cycle = cases_service.run_once(url, Policies(), local, time.time())
    lines.append(f"next cases cycle: {cycle.sent} message(s) delivered")
    print("\n== crews and citizens through the API (lykta api)", flush=True)
    for line in lines:
        print(f"   {line}", flush=True)

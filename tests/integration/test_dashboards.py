"""Grafana dashboards: every panel's SQL expanded as Grafana's PostgreSQL data source does it and run against a
database filled by the simulators through ingest, the rules and the case handling; the JSON checked against
Grafana's JSON schemas; provisioning files, the read-only role, and publishing.

There is no Grafana server on these machines: publishing is tested against a local HTTP server that answers
like Grafana's dashboard and folder API and records what it was sent.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from cases import routing
from cases import service as cases_service
from cases.policy import Policies
from dashboards import grafana_sql, provision
from dashboards.build import build_all
from dashboards.grafana_sql import MacroError, Variable, expand
from floor import config, inventory, lamps
from lykta import admin, mosquitto
from lykta.services import ServiceState
from rules import definitions
from rules.replay import backfill, persist
from simulators import fleet as fleets
from simulators import scenario as scenarios
from simulators.clock import SimClock
from simulators.engine import simulate
from simulators.publish import publish
from storage import assets, grafana, tenants
from storage.panels import QUERIES
from tests.conftest import TEMPLATE, _drop_database, _new_database, make_state_dir
from tests.helpers import RunningIngest, ingest_settings, wait_for
from tests.integration.test_cases import add_crews

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT.parent / "shared" / "grafana-jsonschema"
DAYS = 2
OFFLINE = "SLC-0020"  # the device of SL-0020


@pytest.fixture(scope="module")
def city(service_state: ServiceState) -> Iterator[tuple[str, float]]:
    """Two days of Solvik ending now, through Mosquitto and ingest, with findings, cases, rollups and daylight.
    Yields the database URL and "now"."""
    assert service_state.postgres is not None
    name = _new_database(service_state, TEMPLATE)
    url = service_state.postgres.url(name)
    broker_dir = make_state_dir("lykta-dash-broker-")
    broker = mosquitto.start(broker_dir, None)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            tenants.upsert(conn, "solvik", "Solvik kommun", "sv", "Europe/Stockholm")
            assets.import_records(conn, "solvik", inventory.parse_file(ROOT / "examples" / "solvik.csv"), "solvik.csv")
        add_crews(url)
        now = time.time()
        start = now - DAYS * 86400
        fleet = fleets.from_file(ROOT / "examples" / "solvik.csv", "solvik", 5)
        plan = scenarios.build(
            {
                "seed": 5,
                "duration": f"{DAYS}d",
                "faults": [
                    {"fault": "lampFailure", "target": "SL-0003", "start": "+3h"},
                    {"fault": "icyRoad", "target": "RWS-01", "start": "+40h"},
                    {"fault": "wellOverflow", "target": "SW-01", "start": "+10h", "duration": "3h"},
                    {"fault": "supplyLoss", "target": "CAB-03", "start": "+20h", "duration": "2h"},
                    {"fault": "malformedPayload", "target": "SL-0010", "start": "+1h", "duration": "2h"},
                    # open since the first day: past its due time by now
                    {"fault": "wellOverflow", "target": "SW-02", "start": "+12h"},
                    # repaired by a crew at +30 h (below): a verified repair for the mean time to repair
                    {"fault": "lampFailure", "target": "SL-0150", "start": "+3h", "duration": "27h"},
                    # any 30 hours hold a whole day: a day burner
                    {"fault": "lampUnexpectedOn", "target": "SL-0007", "start": "+1h", "duration": "30h"},
                    # its own connection dies 2 h before the end: the broker publishes its Last Will
                    {"fault": "communicationFailure", "target": "SL-0020", "start": "+46h"},
                ],
            },
            fleet.assets,
            fleet.children,
            start=start,
        )
        publications = list(simulate(fleet, plan))
        host, port = broker.url.removeprefix("mqtt://").split(":")
        with RunningIngest(ingest_settings(ingest_client_id="dash-ingest"), url, broker.url) as ingest:
            asyncio.run(publish(host, int(port), publications, SimClock(start), own_links={OFFLINE}))
            wait_for(lambda: ingest.received() >= len(publications), timeout=120, what="the two days received")

            def stats_written() -> bool:  # every message counted in a statistics interval written to the database
                with psycopg.connect(url) as conn:
                    row = conn.execute("SELECT coalesce(sum(received), 0) FROM ingest_stats").fetchone()
                return row is not None and row[0] >= len(publications)

            wait_for(stats_written, timeout=60, what="the statistics of every message")
        # the rules and the case handling ran a day ago as well as now: some cases are past due, as in any real
        # city, and a crew repaired a lamp in between
        settings = config.load(environ={}, smtp_port=9)
        for upto in (now - 86400, now):
            with psycopg.connect(url) as conn:
                found = backfill(conn, definitions.load(), start, upto)
                with conn.transaction():
                    persist(conn, found, upto)
            cases_service.run_once(url, Policies(), settings, upto)
            if upto < now:
                _repair(url, "SL-0150", now - 18 * 3600)
        admin.maintain(url, 395)
        admin.daylight(url, start - 86400, now + 86400)
        yield url, time.time()  # the panels look up to now: after ingest wrote its statistics
    finally:
        mosquitto.stop(broker)
        _drop_database(service_state, name)


def _repair(url: str, asset_id: str, at: float) -> None:
    """The crew of the asset's case accepts its work order and finishes it at ``at``."""
    with psycopg.connect(url) as conn, conn.transaction():
        row = conn.execute(
            """SELECT w.work_order_id, w.crew_id FROM work_orders w JOIN cases c ON c.case_id = w.case_id
               WHERE c.asset_id = %s AND w.status = 'assigned'""",
            (asset_id,),
        ).fetchone()
        assert row is not None, (
            f"no assigned work order for {asset_id}: "
            + repr(
                conn.execute(
                    "SELECT c.asset_id, c.fault, c.status, w.status, w.crew_id FROM cases c "
                    "LEFT JOIN work_orders w ON w.case_id = c.case_id"
                ).fetchall()
            )
            + repr(conn.execute("SELECT asset_id, fault, status, observed_at FROM findings").fetchall())
        )
        routing.act(conn, row[0], "accept", row[1], None, at - 3600)
        routing.act(conn, row[0], "done", row[1], "lampa bytt", at)


def _variables(url: str) -> dict[str, Variable]:
    """The variables as a person would set them: every tenant, district and kind; one streetlight."""
    with psycopg.connect(url) as conn:
        return grafana_sql.everything(conn, "solvik", "SL-0003")


def _targets(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            yield panel["type"], target
    for annotation in doc.get("annotations", {}).get("list", []):
        if "target" in annotation and "rawSql" in annotation["target"]:
            yield "annotation", annotation["target"]


def _query_name(raw_sql: str) -> str:
    return next(name for name, q in QUERIES.items() if q.sql == raw_sql)


RANGES = [(timedelta(hours=6), 60.0), (timedelta(days=DAYS), 3600.0), (timedelta(days=30), 86400.0)]
ONE_NODE_EMPTY = {"ingest.replication"}
"""panels with nothing to show on one database (tests/integration/test_ha.py reads them on a cluster)"""


def test_every_panel_query_answers_with_the_columns_its_panel_needs(city: tuple[str, float]) -> None:
    url, now = city
    variables = _variables(url)
    assert variables["district"].values and "streetlight" in variables["kind"].values
    end = datetime.fromtimestamp(now, UTC)
    ran = set()
    with psycopg.connect(url) as conn:
        for doc in build_all().values():
            for panel_type, target in _targets(doc):
                name = _query_name(target["rawSql"])
                spec = QUERIES[name]
                assert target["format"] == spec.format
                rows_seen = 0
                for span, interval in RANGES:
                    sql = expand(target["rawSql"], time_from=end - span, time_to=end, interval_s=interval,
                                 variables=variables)  # fmt: skip
                    cur = conn.execute(sql)
                    columns = tuple(d.name for d in cur.description or [])
                    rows = cur.fetchall()
                    assert columns == spec.columns, (name, columns)
                    if spec.format == "time_series":
                        assert columns[0] == "time", name
                        times = [r[0] for r in rows]
                        assert times == sorted(times), f"{name}: time must be ordered"
                    if panel_type == "geomap":
                        assert {"lat", "lon"} <= set(columns)
                        assert all(-90 <= r[0] <= 90 and -180 <= r[1] <= 180 for r in rows)
                    rows_seen += len(rows)
                if name not in ONE_NODE_EMPTY:
                    assert rows_seen > 0, f"{name} ({doc['uid']}) returned no rows on the simulated city"
                ran.add(name)
    assert ran == set(QUERIES), f"panel queries no dashboard uses: {sorted(set(QUERIES) - ran)}"


def test_long_ranges_read_the_rollups(city: tuple[str, float]) -> None:
    """Marked rollup rows (in a transaction that is rolled back) show which table each resolution reads."""
    url, now = city
    end = datetime.fromtimestamp(now, UTC)
    variables = _variables(url)

    def power(conn: psycopg.Connection, interval: float) -> set[float]:
        sql = expand(QUERIES["asset.power"].sql, time_from=end - timedelta(days=DAYS), time_to=end,
                     interval_s=interval, variables=variables)  # fmt: skip
        return {round(r[2], 3) for r in conn.execute(sql).fetchall()}

    with psycopg.connect(url) as conn:
        raw = power(conn, 60.0)
        assert raw and max(raw) < 200
        conn.execute("UPDATE telemetry_hourly SET value_avg = 1111 WHERE metric_id = "
                     "(SELECT metric_id FROM metrics WHERE name = 'power_w')")  # fmt: skip
        conn.execute("UPDATE telemetry_daily SET value_avg = 2222 WHERE metric_id = "
                     "(SELECT metric_id FROM metrics WHERE name = 'power_w')")  # fmt: skip
        assert power(conn, 60.0) == raw  # under an hour: raw readings
        assert power(conn, 3600.0) == {1111.0}  # hours: the hourly rollup
        assert power(conn, 86400.0) == {2222.0}  # days: the daily rollup
        conn.rollback()


def test_variables_cannot_become_sql(city: tuple[str, float]) -> None:
    url, now = city
    end = datetime.fromtimestamp(now, UTC)
    hostile = _variables(url) | {"tenant": Variable(("solvik' OR '1'='1", "x'); DROP TABLE assets; --"))}
    sql = expand(QUERIES["city.map"].sql, time_from=end - timedelta(hours=1), time_to=end, interval_s=60,
                 variables=hostile)  # fmt: skip
    with psycopg.connect(url) as conn:
        assert conn.execute(sql).fetchall() == []
        assert conn.execute("SELECT count(*) FROM assets").fetchone() != (0,)


def test_macros_expand_as_grafana_documents_them() -> None:
    start = datetime(2017, 4, 21, 5, 1, 17, tzinfo=UTC)
    end = datetime(2017, 4, 21, 5, 6, 17, tzinfo=UTC)
    v = {"host": Variable(("a", "b'c")), "one": Variable(("x",), multi=False)}
    assert expand("WHERE $__timeFilter(time_column)", time_from=start, time_to=end, interval_s=60, variables=v) == (
        "WHERE time_column BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'"
    )
    assert expand("SELECT $__timeGroupAlias(dateColumn,'5m')", time_from=start, time_to=end, interval_s=60,
                  variables=v) == """SELECT time_bucket('300s',dateColumn) AS "time\""""  # fmt: skip
    assert expand("$__timeGroup(c, $__interval)", time_from=start, time_to=end, interval_s=3600, variables=v) == (
        "time_bucket('3600s',c)"
    )
    assert expand("$__timeFrom() $__timeTo() $__interval_ms", time_from=start, time_to=end, interval_s=0.5,
                  variables=v) == "'2017-04-21T05:01:17Z' '2017-04-21T05:06:17Z' 500"  # fmt: skip
    # Grafana's percentencode: encodeURIComponentStrict of the value, of "{a,b}" for a multi-value variable
    odd = v | {"one": Variable(("ä $__x(",), multi=False)}
    assert expand("${host:percentencode} ${one:percentencode}", time_from=start, time_to=end, interval_s=60,
                  variables=odd) == "%7Ba%2Cb%27c%7D %C3%A4%20%24__x%28"  # fmt: skip
    assert expand("IN ($host) = $one, ${one:sqlstring}, ${host:csv}", time_from=start, time_to=end, interval_s=60,
                  variables=v) == "IN ('a','b''c') = x, 'x', a,b'c"  # fmt: skip
    assert grafana_sql.interval_text(300) == "5m" and grafana_sql.interval_text(86400) == "1d"
    for bad in ("$__nosuch(x)", "$nosuchvar", "$__timeGroup(c)"):
        with pytest.raises(MacroError):
            expand(bad, time_from=start, time_to=end, interval_s=60, variables=v)


def _schema(name: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / f"{name}.jsonschema.json").read_text()))


def test_dashboards_validate_against_grafanas_schemas() -> None:
    if not SCHEMAS.is_dir():
        pytest.skip(f"Grafana's JSON schemas are not at {SCHEMAS}: nothing to validate against here")
    import jsonschema

    dashboard_schema = _schema("dashboard")
    checked = 0
    for doc in build_all().values():
        jsonschema.validate(doc, dashboard_schema)
        for panel in doc["panels"]:
            if panel["type"] == "row":  # a row is the dashboard schema's RowPanel, validated with the dashboard
                continue
            schema = _schema(panel["type"])
            options = {**schema, "$ref": "#/definitions/Options"}
            jsonschema.validate(panel.get("options", {}), options)
            if "FieldConfig" in schema.get("definitions", {}):
                custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
                jsonschema.validate(custom, {**schema, "$ref": "#/definitions/FieldConfig"})
            checked += 1
    assert checked >= 25
    # the schemas do catch a broken dashboard
    broken = build_all()["city"]
    broken["panels"][0]["gridPos"] = {"h": "tall"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, dashboard_schema)


def test_variables_take_only_the_values_their_queries_list() -> None:
    variables = [v for doc in build_all().values() for v in doc.get("templating", {}).get("list", [])]
    assert variables and all(v.get("allowCustomValue") is False for v in variables if v["type"] == "query")


def test_build_writes_files_a_grafana_server_provisions(tmp_path: Path) -> None:
    written = provision.build(tmp_path, provision.Target("db.internal", 5433, "lykta", sslmode="require"))
    boards = sorted(p.name for p in (tmp_path / "dashboards").iterdir())
    assert boards == sorted(f"{d['uid']}.json" for d in build_all().values()) and len(boards) == 7
    source = yaml.safe_load((tmp_path / "provisioning" / "datasources" / "lykta.yaml").read_text())["datasources"][0]
    assert (source["type"], source["uid"], source["url"]) == ("grafana-postgresql-datasource", "lykta-postgres",
                                                              "db.internal:5433")  # fmt: skip
    assert source["jsonData"]["timescaledb"] is True and source["jsonData"]["sslmode"] == "require"
    assert source["user"] == "lykta_grafana" and source["secureJsonData"]["password"] == "$LYKTA_GRAFANA_DB_PASSWORD"
    provider = yaml.safe_load((tmp_path / "provisioning" / "dashboards" / "lykta.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards/lykta"
    for doc in (json.loads(p.read_text()) for p in written if p.suffix == ".json"):
        for _, target in _targets(doc):
            assert target["datasource"]["uid"] == source["uid"]


def test_the_grafana_role_reads_and_cannot_write(db_url: str, service_state: ServiceState) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        grafana.ensure_reader(conn, "lykta_grafana", "read-only-pw")
        grafana.ensure_reader(conn, "lykta_grafana", "read-only-pw")  # again: updates, no error
    assert service_state.postgres is not None
    reader = db_url.replace(f"{service_state.postgres.user}:{service_state.postgres.password}",
                            "lykta_grafana:read-only-pw")  # fmt: skip
    with psycopg.connect(reader, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM dash_assets").fetchone() == (0,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO tenants (tenant_id, name) VALUES ('x', 'x')")
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO tenants (tenant_id, name) VALUES ('x', 'x')")


class FakeGrafana:
    """Answers like Grafana's folder and dashboard API (a stand-in: no Grafana server can run here)."""

    def __init__(self, token: str) -> None:
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any] | None:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, None))
                if self.headers.get("Authorization") != f"Bearer {token}":
                    return self._answer(401, {"message": "Unauthorized"})
                uid = self.path.removeprefix("/api/folders/")
                if self.path.startswith("/api/folders/") and uid in fake.folders:
                    return self._answer(200, fake.folders[uid])
                return self._answer(404, {"message": "Folder not found"})

            def do_POST(self) -> None:
                body = self._body()
                fake.requests.append(("POST", self.path, body))
                if self.headers.get("Authorization") != f"Bearer {token}":
                    return self._answer(401, {"message": "Unauthorized"})
                assert body is not None
                if self.path == "/api/folders":
                    fake.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"]}
                    return self._answer(200, fake.folders[body["uid"]])
                if self.path == "/api/dashboards/db":
                    uid = body["dashboard"]["uid"]
                    if uid in fake.dashboards and not body.get("overwrite"):
                        return self._answer(412, {"message": "The dashboard has been changed by someone else"})
                    version = fake.dashboards.get(uid, {}).get("version", 0) + 1
                    fake.dashboards[uid] = {"dashboard": body["dashboard"], "version": version,
                                            "folderUid": body.get("folderUid")}  # fmt: skip
                    return self._answer(200, {"status": "success", "uid": uid, "version": version})
                return self._answer(404, {"message": "Not found"})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_publishing_twice_updates_and_never_duplicates() -> None:
    fake = FakeGrafana("glsa_test")
    try:
        first = provision.publish(fake.url, "glsa_test")
        second = provision.publish(fake.url, "glsa_test")
        n = len(build_all())
        assert [a["version"] for a in first] == [1] * n and [a["version"] for a in second] == [2] * n
        assert sorted(fake.dashboards) == sorted(d["uid"] for d in build_all().values())
        assert all(d["folderUid"] == "lykta" and d["dashboard"]["id"] is None for d in fake.dashboards.values())
        assert [p for m, p, _ in fake.requests if m == "POST" and p == "/api/folders"] == ["/api/folders"]
        from floor.errors import LyktaError

        with pytest.raises(LyktaError, match="refused: HTTP 401"):
            provision.publish(fake.url, "wrong")
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_dashboards_commands(tmp_path: Path, db_url: str) -> None:
    import os
    import subprocess
    import sys

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")}, "LYKTA_DATABASE_URL": db_url}

    def lykta(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lykta.cli", "dashboards", *args], capture_output=True,
                              text=True, env={**env, **(extra or {})}, timeout=120, check=False)  # fmt: skip

    built = lykta("build", "--out", str(tmp_path / "grafana"), "--create-role",
                  extra={"LYKTA_GRAFANA_DB_PASSWORD": "pw-from-env"})  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert built.stdout.count("wrote ") == len(build_all()) + 2 and "read-only role lykta_grafana ready" in built.stdout
    source = yaml.safe_load((tmp_path / "grafana/provisioning/datasources/lykta.yaml").read_text())
    assert source["datasources"][0]["url"].startswith("127.0.0.1:")  # taken from the database URL
    # One municipality's Grafana: its own role, which the data source logs in as.
    with psycopg.connect(db_url, autocommit=True) as conn:
        tenants.upsert(conn, "norrby", "Norrby")
    norrby = lykta("build", "--out", str(tmp_path / "norrby"), "--create-role", "--tenant", "norrby",
                   extra={"LYKTA_GRAFANA_DB_PASSWORD": "pw-from-env"})  # fmt: skip
    assert norrby.returncode == 0 and "lykta_grafana_norrby ready (municipality norrby)" in norrby.stdout
    source = yaml.safe_load((tmp_path / "norrby/provisioning/datasources/lykta.yaml").read_text())
    assert source["datasources"][0]["user"] == "lykta_grafana_norrby"
    with psycopg.connect(db_url) as conn:
        mapped = conn.execute("SELECT role_name, tenant_id FROM tenant_readers ORDER BY 1").fetchall()
    assert mapped == [("lykta_grafana", None), ("lykta_grafana_norrby", "norrby")]
    unknown = lykta("build", "--out", str(tmp_path / "x"), "--create-role", "--tenant", "atlantis",
                    extra={"LYKTA_GRAFANA_DB_PASSWORD": "pw"})  # fmt: skip
    assert unknown.returncode == 1 and "unknown tenant 'atlantis'" in unknown.stderr
    too_long = lykta("build", "--out", str(tmp_path / "y"), "--tenant", "a" * 60)
    assert too_long.returncode == 1 and "too long for a role name" in too_long.stderr
    no_password = lykta("build", "--out", str(tmp_path / "g2"), "--create-role")
    assert no_password.returncode == 1 and "LYKTA_GRAFANA_DB_PASSWORD" in no_password.stderr
    assert "needs --out" in lykta("build").stderr
    assert "needs --url and --token" in lykta("publish", "--url", "http://127.0.0.1:9").stderr
    refused = lykta("publish", "--url", "ftp://x", "--token", "t")
    assert refused.returncode == 1 and "expected an http:// or https:// URL" in refused.stderr
    down = lykta("publish", "--url", "http://127.0.0.1:9", "--token", "t")
    assert down.returncode == 1 and "cannot reach Grafana at http://127.0.0.1:9" in down.stderr


def test_assets_without_a_district_are_shown_under_the_empty_district(city: tuple[str, float]) -> None:
    url, now = city
    end = datetime.fromtimestamp(now, UTC)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE assets SET district = NULL WHERE asset_id = 'RWS-01'")
        variables = _variables(url) | {"district": Variable(("",))}  # what the district variable lists for none
        for name in ("environment.road", "city.map"):
            sql = expand(QUERIES[name].sql, time_from=end - timedelta(days=1), time_to=end, interval_s=3600,
                         variables=variables)  # fmt: skip
            names = {str(v) for row in conn.execute(sql).fetchall() for v in row}
            assert "RWS-01" in names, name
        conn.rollback()


def _panel(url: str, name: str, span: timedelta = timedelta(days=DAYS), **variables: Variable) -> list[dict[str, Any]]:
    """The rows of a panel over the last ``span``, as dicts by column, with the variables a person sets."""
    end = datetime.now(UTC)
    sql = expand(QUERIES[name].sql, time_from=end - span, time_to=end, interval_s=3600,
                 variables=_variables(url) | variables)  # fmt: skip
    with psycopg.connect(url) as conn:
        cur = conn.execute(sql)
        columns = [d.name for d in cur.description or []]
        return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


def test_open_faults_list_every_unresolved_case_and_uncased_finding(city: tuple[str, float]) -> None:
    url, _ = city
    rows = _panel(url, "city.open_faults")
    with psycopg.connect(url) as conn:
        cases: dict[int, str] = dict(
            conn.execute("SELECT case_id, asset_id FROM cases WHERE status <> 'resolved'").fetchall()
        )
        crews: dict[int, str] = dict(conn.execute("SELECT case_id, crew_id FROM work_orders WHERE status IN "
                                  "('new', 'assigned', 'in_progress')").fetchall())  # fmt: skip
        uncased = conn.execute(
            """SELECT f.asset_id, f.fault FROM findings f WHERE f.status = 'open' AND NOT EXISTS (
                   SELECT 1 FROM case_findings cf JOIN cases c USING (case_id)
                   WHERE cf.finding_id = f.finding_id AND c.status <> 'resolved')"""
        ).fetchall()
    assert {r["case"]: r["asset"] for r in rows if r["case"] is not None} == cases
    assert sorted((r["asset"], r["fault"]) for r in rows if r["case"] is None) == sorted(uncased)
    assert all(r["crew"] == crews.get(r["case"]) for r in rows if r["case"] is not None)
    lamp = next(r for r in rows if r["asset"] == "SL-0003")
    assert (lamp["fault"], lamp["crew"], lamp["address"]) == ("lampFailure", "ljus-norr", "Hamngatan 3")
    assert 0 < lamp["age (h)"] < 48
    # the well overflowing since the first day is past its due time (4 h) and comes first
    assert rows[0]["asset"] == "SW-02" and rows[0]["breached"] is True
    assert not any(r["asset"] == "SL-0150" for r in rows)  # repaired and verified


def test_the_map_shows_each_assets_fault_since_when_and_last_seen(city: tuple[str, float]) -> None:
    url, _ = city
    by_asset = {r["asset_id"]: r for r in _panel(url, "city.map")}
    lamp = by_asset["SL-0003"]
    assert lamp["fault"] == "lampFailure" and lamp["since"] is not None and lamp["state"] in (2, 3)
    assert lamp["last seen"] is not None
    assert by_asset["SL-0150"]["fault"] is None and by_asset["SL-0150"]["state"] == 0
    well = by_asset["SW-02"]
    assert well["fault"] == "wellOverflow" and well["state"] == 2


def test_data_links_open_the_asset_dashboard_and_the_case(city: tuple[str, float]) -> None:
    boards = build_all("https://lykta.example/")
    uids = {d["uid"] for d in boards.values()}

    def links(board: str, title: str) -> list[str]:
        panel = next(p for p in boards[board]["panels"] if p["title"] == title)
        return [link["url"] for link in panel["fieldConfig"]["defaults"]["links"]]

    asset = "/d/lykta-asset/lykta-asset?var-tenant=${__data.fields.tenant_id}&var-asset=${__data.fields.%s}"
    assert links("city", "Assets by state")[0].startswith(asset % "asset_id")
    assert links("city", "Open faults and cases") == [
        asset % "asset" + "&${__url_time_range}",
        "https://lykta.example/console/${__data.fields.tenant_id}/cases/${__data.fields.case}",
    ]
    assert links("maintenance", "Overdue cases")[1].endswith("/cases/${__data.fields.case}")
    for board, title in (("maintenance", "Offline devices"), ("lamps", "Burning hours per lamp")):
        assert links(board, title) == [asset % "asset" + "&${__url_time_range}"]
    # without lykta's address, cases are no links
    plain = build_all()["city"]
    faults = next(p for p in plain["panels"] if p["title"] == "Open faults and cases")
    assert len(faults["fieldConfig"]["defaults"]["links"]) == 1
    # every dashboard links to the others (by their common tag), keeping time and variables, and each field a
    # link names is a column of its query
    for doc in boards.values():
        assert doc["links"] == [
            {**doc["links"][0], "type": "dashboards", "tags": ["lykta"], "includeVars": True, "keepTime": True}
        ]
        for panel in doc["panels"]:
            for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", []):
                columns = QUERIES[_query_name(panel["targets"][0]["rawSql"])].columns
                for field in re.findall(r"__data\.fields\.([a-z_]+)", link["url"]):
                    assert field in columns, (panel["title"], field)
                target = re.match(r"/d/([a-z-]+)/", link["url"])
                assert target is None or target.group(1) in uids


def test_mean_time_to_repair_is_no_data_when_nothing_was_repaired(city: tuple[str, float]) -> None:
    url, _ = city
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM repaired_at - opened_at) / 3600 FROM cases "
            "WHERE asset_id = 'SL-0150' AND resolution = 'verified'"
        ).fetchone()
    assert row is not None, "the repaired lamp's case was verified"
    assert _panel(url, "maintenance.mttr") == [{"mean time to repair": pytest.approx(float(row[0]))}]
    # a district where nothing was repaired: no value (Grafana shows "no repairs"), not 0 h
    assert _panel(url, "maintenance.mttr", district=Variable(("Gamla staden",))) == []


def test_energy_today_is_the_municipalitys_day(city: tuple[str, float]) -> None:
    """Today's energy since midnight in Europe/Stockholm, as the meters' readings say, not since midnight UTC."""
    url, _ = city
    with psycopg.connect(url) as conn:
        midnight = conn.execute(
            "SELECT date_trunc('day', now() AT TIME ZONE 'Europe/Stockholm') AT TIME ZONE 'Europe/Stockholm'"
        ).fetchone()
        assert midnight is not None
        # every lamp's last meter reading less its last one before midnight
        row = conn.execute(
            """SELECT sum(last.value - before.value) FROM devices d
               JOIN assets a ON a.tenant_id = d.tenant_id AND a.asset_id = d.asset_id AND a.kind = 'streetlight'
               CROSS JOIN LATERAL (SELECT t.value FROM telemetry t JOIN metrics m USING (metric_id)
                   WHERE t.device_key = d.device_key AND m.name = 'energy_kwh'
                   ORDER BY t.device_time DESC LIMIT 1) last
               CROSS JOIN LATERAL (SELECT t.value FROM telemetry t JOIN metrics m USING (metric_id)
                   WHERE t.device_key = d.device_key AND m.name = 'energy_kwh' AND t.device_time < %s
                   ORDER BY t.device_time DESC LIMIT 1) before""",
            (midnight[0],),
        ).fetchone()
    assert row is not None and row[0] is not None
    assert _panel(url, "city.energy_today") == [{"kWh today": pytest.approx(float(row[0]), rel=1e-9)}]


def test_lamps_show_burning_hours_against_rated_life_and_day_burners(city: tuple[str, float]) -> None:
    url, _ = city
    life = _panel(url, "lamps.life")
    with psycopg.connect(url) as conn:
        latest: dict[str, float] = dict(conn.execute(
            """SELECT d.asset_id, l.value FROM telemetry_latest l JOIN devices d USING (device_key)
               JOIN metrics m USING (metric_id) WHERE m.name = 'burning_hours_h'"""
        ).fetchall())  # fmt: skip
        types: dict[str, str] = dict(
            conn.execute("SELECT asset_id, lamp_type FROM assets WHERE kind = 'streetlight'").fetchall()
        )
    assert {r["asset"] for r in life} == {a for a, t in types.items() if lamps.rated_life_h(t) and a in latest}
    for r in life:
        rated = lamps.rated_life_h(types[r["asset"]])
        assert rated is not None and r["rated life (h)"] == rated and r["burning hours"] == round(latest[r["asset"]])
        assert r["life used (%)"] == round(100 * latest[r["asset"]] / rated)
    used = [float(r["life used (%)"]) for r in life]
    assert used == sorted(used, reverse=True)
    near = _panel(url, "lamps.near_life")[0]
    assert near["at 90 % of rated life or more"] == sum(100 * latest[r["asset"]] / r["rated life (h)"] >= 90
                                                        for r in life) > 0  # fmt: skip
    # the lamp burning through a whole day is the one day burner; the district's daily hours say so too
    burners = _panel(url, "lamps.day_burners", timedelta(days=3))
    assert [r["asset"] for r in burners] == ["SL-0007"] and burners[0]["hours by day"] > 3
    by_day = _panel(url, "lamps.by_day", timedelta(days=3))
    assert sum(r["value"] for r in by_day if r["metric"] == "Norra hamnen") >= float(burners[0]["hours by day"]) - 0.05
    per_district = _panel(url, "lamps.by_district", timedelta(days=3))
    assert {r["metric"] for r in per_district} >= {"Norra hamnen", "Gamla staden"}


def test_offline_devices_show_their_last_will(city: tuple[str, float]) -> None:
    """Silent devices (by when lykta last heard them: here the whole two days arrived just now) and devices whose
    last status said offline."""
    url, _ = city
    rows = _panel(url, "maintenance.offline")
    with psycopg.connect(url) as conn:
        expected = {r[0] for r in conn.execute(
            """SELECT device_id FROM devices
               WHERE last_seen_at < now() - make_interval(secs => 4 * reporting_interval_s) OR online = false"""
        ).fetchall()}  # fmt: skip
    assert OFFLINE in expected
    assert {r["device"] for r in rows} == expected
    gone = next(r for r in rows if r["device"] == OFFLINE)
    # the broker published the device's Last Will ("offline") when its connection died
    assert gone["last status"] == "offline" and gone["asset"] == "SL-0020" and gone["status since"] is not None
    assert gone["last seen"] is not None and gone["silent (h)"] >= 0


def test_a_municipalitys_ingest_health_is_its_own_devices(city: tuple[str, float]) -> None:
    url, _ = city
    devices = _panel(url, "ingest.devices")[0]
    with psycopg.connect(url) as conn:
        total = conn.execute("SELECT count(*) FROM devices WHERE tenant_id = 'solvik'").fetchone()
    assert total is not None and devices["reporting"] + devices["silent"] + devices["never heard"] == total[0]
    assert devices["reporting"] > 100
    kinds = {r["device kind"]: r for r in _panel(url, "ingest.delivery")}
    assert kinds["streetlight_controller"]["devices"] > 100
    assert all(r["median (s)"] >= 0 for r in kinds.values())
    reports = _panel(url, "ingest.reports")
    assert {r["metric"] for r in reports} >= {"streetlight_controller", "cabinet_meter"}
    first = min(r["time"] for r in reports)
    with psycopg.connect(url) as conn:  # each report of a lamp carries its power: one reading of power_w each
        sent = conn.execute(
            """SELECT count(*) FROM telemetry t JOIN devices d USING (device_key) JOIN metrics m USING (metric_id)
               WHERE d.device_kind = 'streetlight_controller' AND m.name = 'power_w'
                 AND time_bucket('1 hour', t.device_time) >= %s""",
            (first,),
        ).fetchone()
    counted = sum(r["value"] for r in reports if r["metric"] == "streetlight_controller")
    assert sent is not None and counted == sent[0]
    rejected = _panel(url, "ingest.tenant_rejections")
    assert sum(r["value"] for r in rejected) >= 1  # the malformed payloads


def test_the_simulators_and_the_dashboards_agree_on_rated_lives(city: tuple[str, float]) -> None:
    url, _ = city
    with psycopg.connect(url) as conn:
        assert dict(conn.execute("SELECT family, rated_life_h FROM lamp_families").fetchall()) == lamps.RATED_LIFE_H

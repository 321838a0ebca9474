"""Tenant isolation in the database: each municipality's Grafana role sees its own rows only, whatever a panel's
variables say; raw telemetry and secrets are closed to every reader; readers change nothing; variable values
cannot become SQL. Two municipalities hold the same asset and device ids, with different readings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from cases import service as cases_service
from cases.policy import Policies
from dashboards.grafana_sql import Variable, everything, expand
from floor import config, inventory
from lykta.services import ServiceState
from storage import assets, maintenance, tenants
from storage import rules as rule_store
from storage.grafana import ensure_reader, reader_role
from storage.panels import QUERIES
from storage.rules import Finding

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
METRICS = ("power_w", "dim_level_pct", "voltage_v", "energy_kwh", "burning_hours_h", "road_temp_c",
           "dew_point_c", "water_level_m", "fill_pct")  # fmt: skip
PASSWORD = "reader-pw"


def _fill(conn: psycopg.Connection, tenant: str, scale: float) -> None:
    """Hourly readings of the panels' metrics for every device of the tenant over two days; the values of one
    municipality are ``scale`` times the other's, so a leak shows in every sum."""
    conn.execute(
        """INSERT INTO telemetry (device_time, device_key, metric_id, value, received_at)
           SELECT %(now)s - h * INTERVAL '1 hour', d.device_key, m.metric_id,
                  %(scale)s * CASE WHEN m.name IN ('energy_kwh', 'burning_hours_h') THEN 1000 - h
                                   ELSE 10 + h %% 7 END,
                  %(now)s
           FROM devices d, metrics m, generate_series(0, 47) h
           WHERE d.tenant_id = %(tenant)s AND m.name = ANY(%(metrics)s)""",
        {"now": NOW, "scale": scale, "tenant": tenant, "metrics": list(METRICS)},
    )
    conn.execute(
        """INSERT INTO telemetry_latest (device_key, metric_id, device_time, value, received_at)
           SELECT DISTINCT ON (t.device_key, t.metric_id) t.device_key, t.metric_id, t.device_time, t.value,
                  t.received_at
           FROM telemetry t JOIN devices d USING (device_key) WHERE d.tenant_id = %s
           ORDER BY t.device_key, t.metric_id, t.device_time DESC""",
        (tenant,),
    )
    conn.execute(
        "INSERT INTO rollup_pending SELECT generate_series(%s - INTERVAL '47 hours', %s, INTERVAL '1 hour') "
        "ON CONFLICT DO NOTHING",
        (NOW, NOW),
    )
    lamp = conn.execute(
        "SELECT asset_id FROM assets WHERE tenant_id = %s AND kind = 'streetlight' ORDER BY 1 LIMIT 1", (tenant,)
    ).fetchone()
    station = conn.execute(
        "SELECT asset_id FROM assets WHERE tenant_id = %s AND kind = 'road_weather_station' ORDER BY 1 LIMIT 1",
        (tenant,),
    ).fetchone()
    assert lamp and station
    t = (NOW - timedelta(hours=5)).timestamp()
    rule_store.insert_finding(conn, Finding(tenant, lamp[0], None, "lamp-failure", "lampFailure", "major", t, t, t, {}))
    rule_store.insert_finding(conn, Finding(tenant, station[0], None, "icing", "icyRoad", "critical", t, t, t, {}))
    conn.execute(
        "INSERT INTO dead_letters (topic, payload, reason, tenant_id, device_id) "
        "VALUES (%s, %s, 'malformed_json', %s, 'x')",
        (f"lykta/{tenant}/streetlight_controller/x/telemetry", b"{", tenant),
    )
    conn.execute(
        "INSERT INTO daylight (tenant_id, day, dawn, dusk) VALUES (%s, %s, %s, %s)",
        (tenant, NOW.date(), NOW.replace(hour=6), NOW.replace(hour=18)),
    )


@pytest.fixture(scope="module")
def two_towns(service_state: ServiceState) -> Iterator[str]:
    """solvik and norrby: the same inventory (same asset and device ids), readings, findings, cases, energy."""
    from tests.conftest import TEMPLATE, _drop_database, _new_database

    assert service_state.postgres is not None
    name = _new_database(service_state, TEMPLATE)
    url = service_state.postgres.url(name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            records = inventory.parse_file(EXAMPLES / "solvik.csv")
            for tenant, scale in (("solvik", 1.0), ("norrby", 2.0)):
                tenants.upsert(conn, tenant, tenant.title(), "sv", "Europe/Stockholm")
                assets.import_records(conn, tenant, records, "solvik.csv")
                _fill(conn, tenant, scale)
            conn.execute("INSERT INTO dead_letters (topic, payload, reason) VALUES ('nowhere', 'x', 'bad_topic')")
            maintenance.maintain(conn, retention_days=395)
            for reader in ("solvik", "norrby", None):
                ensure_reader(conn, reader_role(reader), PASSWORD, reader)
        cases_service.run_once(url, Policies(), config.load(environ={}, smtp_port=9), NOW.timestamp())
        yield url
    finally:
        _drop_database(service_state, name)


def as_reader(url: str, tenant: str | None, service_state: ServiceState) -> str:
    assert service_state.postgres is not None
    owner = f"{service_state.postgres.user}:{service_state.postgres.password}"
    return url.replace(owner, f"{reader_role(tenant)}:{PASSWORD}")


def run(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def panel_sql(sql: str, variables: dict[str, Variable]) -> str:
    return expand(sql, time_from=NOW - timedelta(days=2), time_to=datetime.now(UTC) + timedelta(minutes=1),
                  interval_s=3600, variables=variables)  # fmt: skip


TENANT_PANELS = [name for name, q in QUERIES.items() if "${tenant" in q.sql]


def test_the_data_is_there_for_both(two_towns: str) -> None:
    with psycopg.connect(two_towns) as conn:
        energy = {r[0] for r in conn.execute("SELECT DISTINCT tenant_id FROM energy_daily")}
        cases = {r[0] for r in conn.execute("SELECT DISTINCT tenant_id FROM cases")}
    assert energy == cases == {"solvik", "norrby"}


@pytest.mark.parametrize("panel", TENANT_PANELS)
def test_a_reader_gets_its_own_panels_and_nothing_of_the_other(
    two_towns: str, service_state: ServiceState, panel: str
) -> None:
    with psycopg.connect(two_towns) as conn:
        own = everything(conn, "solvik", "SL-0001")
        other = {**own, "tenant": Variable(("norrby",))}
        both = {**own, "tenant": Variable(("solvik", "norrby"))}
        nobody = {**own, "tenant": Variable(("no-such-town",))}
    reader = as_reader(two_towns, "solvik", service_state)
    sql = QUERIES[panel].sql
    # What the owner sees of the municipality asked for; a municipality's role does not see the rejected
    # messages that named no municipality.
    owner = sql.replace("tenant_id IS NULL OR ", "")
    mine = run(two_towns, panel_sql(owner, own))
    assert run(reader, panel_sql(sql, own)) == mine
    # Asking for the other municipality, or for both, changes nothing: its rows are not there for this role.
    assert run(reader, panel_sql(sql, other)) == run(two_towns, panel_sql(owner, nobody))
    assert run(reader, panel_sql(sql, both)) == mine
    # Where the panel shows anything, the owner asking for the other municipality sees its (different) rows:
    # a leak would have shown above.
    if mine != run(two_towns, panel_sql(owner, nobody)):
        assert run(two_towns, panel_sql(owner, other)) != run(two_towns, panel_sql(owner, nobody))


def test_tables_show_a_reader_its_rows_only(two_towns: str, service_state: ServiceState) -> None:
    solvik, everyone = as_reader(two_towns, "solvik", service_state), as_reader(two_towns, None, service_state)
    for table in ("tenants", "assets", "devices", "findings", "cases", "daylight", "energy_daily", "dead_letters",
                  "dash_assets", "dash_cases", "dash_energy_daily", "lamp_days", "dash_open_faults",
                  "dash_map", "device_reports"):  # fmt: skip
        assert run(solvik, f"SELECT DISTINCT tenant_id FROM {table}") == [("solvik",)], table
        seen = {r[0] for r in run(everyone, f"SELECT DISTINCT tenant_id FROM {table}")}
        assert {"solvik", "norrby"} <= seen, table
    assert run(everyone, "SELECT count(*) FROM dead_letters WHERE tenant_id IS NULL") == [(1,)]
    assert run(solvik, "SELECT lykta_visible_tenants()") == [(["solvik"],)]
    # The functions over raw telemetry keep to the caller's municipalities as well.
    series = (
        "SELECT count(*) FROM dash_series(ARRAY['norrby'], ARRAY['SL-0001'], 'power_w', now() - interval '2 days', "
        "now(), 60)"
    )
    assert run(solvik, series) == [(0,)]
    assert run(two_towns, series)[0][0] > 0  # type: ignore[operator]
    latest = "SELECT DISTINCT tenant_id FROM dash_latest(ARRAY['solvik', 'norrby'], NULL, NULL)"
    assert run(solvik, latest) == [("solvik",)]
    assert sorted(run(everyone, latest)) == [("norrby",), ("solvik",)]


@pytest.mark.parametrize(
    "relation",
    ["telemetry", "telemetry_hourly", "telemetry_daily", "telemetry_latest", "device_status", "api_tokens",
     "mqtt_accounts", "crews", "service_requests", "outbox", "work_order_notes", "tenant_readers", "rule_states"],
)  # fmt: skip
def test_raw_telemetry_and_secrets_are_closed_to_readers(
    two_towns: str, service_state: ServiceState, relation: str
) -> None:
    for tenant in ("solvik", None):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            run(as_reader(two_towns, tenant, service_state), f"SELECT * FROM {relation} LIMIT 1")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE assets SET name = 'taken' WHERE tenant_id = 'norrby'",
        "UPDATE assets SET name = 'mine' WHERE tenant_id = 'solvik'",
        "DELETE FROM cases",
        "INSERT INTO findings (tenant_id, asset_id, rule_id, fault, severity, observed_at, last_seen) "
        "VALUES ('norrby', 'SL-0001', 'x', 'x', 'minor', now(), now())",
        "CREATE TABLE mine (x int)",
        "CREATE FUNCTION leak(text) RETURNS boolean LANGUAGE sql AS 'SELECT true'",
        "SELECT refresh_energy_day(now())",
    ],
)
def test_readers_change_nothing_even_when_they_ask_for_write_access(
    two_towns: str, service_state: ServiceState, statement: str
) -> None:
    with psycopg.connect(as_reader(two_towns, "solvik", service_state), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(statement)
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


HOSTILE = [
    "solvik') OR true --",
    "x' UNION SELECT tenant_id FROM tenants --",
    "norrby'; DROP TABLE assets; --",
    "\\'; SELECT pg_sleep(5); --",
    "${tenant}",
    "ä" * 100_000,
]
# Grafana expands its macros after it has put the variable values in, also inside quoted values, so these
# break the quoting (a Grafana behaviour lykta cannot change); a NUL cuts the statement short. They must end
# in an error, never in another municipality's rows: the role is the boundary.
BREAKING = ["$__timeFilter(x)", "$__timeFrom()) OR (true", "a$__timeGroup(x, 1h) OR true --", "solvik\x00"]


def _hostile_runs(url: str, own: dict[str, Variable], value: str) -> Iterator[tuple[str, str, object]]:
    """(panel, variable, rows or the error) for every panel and variable holding ``value``."""
    for name in TENANT_PANELS:
        for variable in ("tenant", "district", "kind", "asset"):
            sql = panel_sql(QUERIES[name].sql, {**own, variable: Variable((value,), multi=own[variable].multi)})
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SET statement_timeout = '4s'")
                try:
                    yield name, variable, conn.execute(sql).fetchall()
                except psycopg.Error as exc:
                    yield name, variable, exc


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_variable_values_stay_literals(two_towns: str, service_state: ServiceState, value: str) -> None:
    """Every panel with a hostile value in each variable, as the installation's reader (a leak would show):
    a literal that matches nothing, never SQL."""
    with psycopg.connect(two_towns) as conn:
        own = everything(conn, "solvik", "SL-0001")
    unknown = {name: run(two_towns, panel_sql(QUERIES[name].sql, {**own, "tenant": Variable(("x",))}))
               for name in TENANT_PANELS}  # fmt: skip
    before = run(two_towns, "SELECT count(*) FROM assets")
    for name, variable, rows in _hostile_runs(as_reader(two_towns, None, service_state), own, value):
        assert not isinstance(rows, Exception), (name, variable, rows)
        if variable == "tenant":
            assert rows == unknown[name], name
    assert run(two_towns, "SELECT count(*) FROM assets") == before


@pytest.mark.parametrize("value", BREAKING, ids=range(len(BREAKING)))
def test_values_holding_grafana_macros_stay_literals(two_towns: str, service_state: ServiceState, value: str) -> None:
    """Grafana expands its macros after putting the variables in, also inside quoted values, so with ``sqlstring``
    quoting these values broke out of their quotes. Percent-encoded, they are literals that match nothing."""
    with psycopg.connect(two_towns) as conn:
        own = everything(conn, "solvik", "SL-0001")
    reader = as_reader(two_towns, "solvik", service_state)
    for name, variable, rows in _hostile_runs(reader, own, value):
        if "\x00" in value and isinstance(rows, Exception):  # text cannot hold U+0000: a clear error, no more
            assert isinstance(rows, psycopg.errors.CharacterNotInRepertoire), (name, variable, rows)
            continue
        assert not isinstance(rows, Exception), (name, variable, rows)
        if variable == "tenant":
            assert rows == run(reader, panel_sql(QUERIES[name].sql, {**own, "tenant": Variable(("x",))})), name


# The outside test's combination: each value harmless alone, together they made the City map return pg_roles.
TOGETHER = {
    "tenant": "$__unixEpochFilter(a,",
    "kind": ") OR (tenant_id <>",
    "district": ") UNION ALL SELECT 0,0,rolname::text,current_user::text,version(),0 FROM pg_roles --",
    "asset": "') OR true --",
}


@pytest.mark.parametrize("tenant", ["solvik", "norrby", None])
def test_hostile_values_in_all_variables_together_return_nothing_extra(
    two_towns: str, service_state: ServiceState, tenant: str | None
) -> None:
    """Every panel, as each reader, with hostile values in every variable at once: exactly the rows it returns
    when every variable holds a value that matches nothing (no other municipality's rows, no catalog rows)."""
    reader = as_reader(two_towns, tenant, service_state)
    with psycopg.connect(two_towns) as conn:
        own = everything(conn, tenant or "solvik", "SL-0001")
    hostile = {k: Variable((v,), multi=own[k].multi) for k, v in TOGETHER.items()}
    unknown = {k: Variable(("nothing-here",), multi=own[k].multi) for k in TOGETHER}
    for name, query in QUERIES.items():
        with psycopg.connect(reader, autocommit=True) as conn:
            conn.execute("SET statement_timeout = '4s'")
            rows = conn.execute(panel_sql(query.sql, hostile)).fetchall()
            expected = conn.execute(panel_sql(query.sql, unknown)).fetchall()
        assert rows == expected, (name, rows[:3])
        assert not any("postgres" in str(v) or "PostgreSQL" in str(v) for row in rows for v in row), name


def test_a_leaky_function_sees_no_other_municipality(two_towns: str, service_state: ServiceState) -> None:
    """The attack: a cheap, IMMUTABLE function that prints its argument, in the WHERE of a query on a view that runs
    with its owner's rights. A reader could create one as a temporary function and saw the other municipality's
    assets and districts. Now a reader can create nothing, not even temporarily, and a leaky function it could
    call anyway (made here by the owner) only ever sees rows the view's municipality filter has let through."""
    reader = as_reader(two_towns, "solvik", service_state)
    leak = """CREATE FUNCTION {name}(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 IMMUTABLE AS
              $$ BEGIN RAISE NOTICE 'leak:%', $1; RETURN true; END $$"""
    with psycopg.connect(reader, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(leak.format(name="pg_temp.leak"))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TEMP TABLE mine (x int)")
    with psycopg.connect(two_towns, autocommit=True) as owner:
        owner.execute(leak.format(name="public.leak_probe"))
        owner.execute(f"GRANT EXECUTE ON FUNCTION public.leak_probe(text) TO {reader_role('solvik')}")
    try:
        seen: list[str] = []
        with psycopg.connect(reader, autocommit=True) as conn:
            conn.add_notice_handler(lambda notice: seen.append(notice.message_primary or ""))
            # what an attacker does so that the view's municipality filter is not an index condition
            conn.execute("SET enable_indexscan = off")
            conn.execute("SET enable_bitmapscan = off")
            # every view a reader can reach that runs with its owner's rights
            for view in ("dash_energy_daily", "dash_open_faults"):
                seen.clear()
                rows = conn.execute(
                    f"SELECT count(*) FROM {view} WHERE leak_probe(tenant_id) AND leak_probe(asset_id)"
                ).fetchall()
                assert rows[0][0] > 0 and seen, view  # the function ran, on solvik's rows
                tenants_seen = {s.removeprefix("leak:") for s in seen} & {"solvik", "norrby"}
                assert tenants_seen == {"solvik"}, (view, sorted(set(seen))[:5])
    finally:
        with psycopg.connect(two_towns, autocommit=True) as owner:
            owner.execute("DROP FUNCTION public.leak_probe(text)")


def test_ingest_counters_are_for_the_installation_only(two_towns: str, service_state: ServiceState) -> None:
    """``ingest_stats`` holds every municipality's message counts and rejection reasons: each municipality's reader
    could read them (directly and through ``dash_ingest``). Now only the installation's reader sees them."""
    with psycopg.connect(two_towns, autocommit=True) as owner:
        owner.execute(
            """INSERT INTO ingest_stats (at, instance, interval_s, received, stored, duplicates, rejected,
                                         rejected_by_reason, batches, commit_seconds, backlog)
               VALUES (now(), 'counters-test', 10, 100, 600, 0, 2, '{"malformed_json": 2}', 1, 0.01, 0)
               ON CONFLICT DO NOTHING"""
        )
    for relation in ("ingest_stats", "dash_ingest"):
        query = f"SELECT count(*) FROM {relation} WHERE instance = 'counters-test'"
        assert run(as_reader(two_towns, "solvik", service_state), query) == [(0,)], relation
        assert run(as_reader(two_towns, None, service_state), query) == [(1,)], relation


@pytest.mark.parametrize("panel", ["ingest.devices", "ingest.reports", "ingest.delivery", "ingest.tenant_rejections"])
def test_a_municipality_sees_its_own_ingest_health(two_towns: str, service_state: ServiceState, panel: str) -> None:
    """In place of ingest's installation-wide counters, a municipality's reader sees how its own devices deliver:
    rows for its devices, none of the other's (whose devices report twice the values, not more or fewer)."""
    with psycopg.connect(two_towns) as conn:
        own = everything(conn, "solvik", "SL-0001")
    rows = run(as_reader(two_towns, "solvik", service_state), panel_sql(QUERIES[panel].sql, own))
    assert rows, panel
    assert rows == run(two_towns, panel_sql(QUERIES[panel].sql, own))
    both = {**own, "tenant": Variable(("solvik", "norrby"))}
    assert run(as_reader(two_towns, "solvik", service_state), panel_sql(QUERIES[panel].sql, both)) == rows
    assert run(as_reader(two_towns, None, service_state), panel_sql(QUERIES[panel].sql, both)) != rows

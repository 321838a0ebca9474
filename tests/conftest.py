"""Real services for the tests: one private PostgreSQL+TimescaleDB and Mosquitto per test session.

Started with lykta's own service code in a temporary state directory on free
ports. Each test that needs a database gets a fresh one, cloned from a template
database that the migrations built once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from lykta import services
from lykta.services import ServiceState
from storage import migrations

TEMPLATE = "lykta_template"


def make_state_dir(prefix: str) -> Path:
    """A temporary directory the service accounts can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def service_state() -> Iterator[ServiceState]:
    state_dir = make_state_dir("lykta-test-")
    try:
        state = services.up(state_dir / "state", ephemeral=True)
        assert state.postgres is not None
        admin_url = state.postgres.url("postgres")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        with psycopg.connect(state.postgres.url(TEMPLATE), autocommit=True) as conn:
            migrations.migrate(conn)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(TEMPLATE)))
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (TEMPLATE,))
        yield state
    finally:
        services.down(state_dir / "state")
        shutil.rmtree(state_dir, ignore_errors=True)


def _new_database(state: ServiceState, template: str) -> str:
    assert state.postgres is not None
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(state.postgres.url("postgres"), autocommit=True) as conn:
        for attempt in range(50):
            try:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
                )
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 49:
                    raise
                conn.execute("SELECT pg_sleep(0.1)")
    return name


def _drop_database(state: ServiceState, name: str) -> None:
    assert state.postgres is not None
    with psycopg.connect(state.postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db_url(service_state: ServiceState) -> Iterator[str]:
    """A fresh, migrated database."""
    assert service_state.postgres is not None
    name = _new_database(service_state, TEMPLATE)
    try:
        yield service_state.postgres.url(name)
    finally:
        _drop_database(service_state, name)


@pytest.fixture
def empty_db_url(service_state: ServiceState) -> Iterator[str]:
    """A fresh database with nothing in it."""
    assert service_state.postgres is not None
    name = _new_database(service_state, "template0")
    try:
        yield service_state.postgres.url(name)
    finally:
        _drop_database(service_state, name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A private state directory for tests that start their own services; stopped afterwards."""
    path = make_state_dir("lykta-state-")
    try:
        yield path / "state"
    finally:
        with contextlib.suppress(Exception):
            services.down(path / "state")
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cli_env(service_state: ServiceState, db_url: str) -> dict[str, str]:
    """Environment for running the real ``lykta`` command against a fresh database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")}
    env["LYKTA_DATABASE_URL"] = db_url
    return env


TSL_DIR = Path(__file__).resolve().parent / "tsl"


@pytest.fixture(scope="session")
def tsl_server() -> Iterator[str]:
    """TimescaleDB with the TSL (Community) features: PGlite from npm, served on a free loopback port.

    Debian packages only the Apache edition, so this is how the tests exercise the
    statements of the TSL storage path. One connection at a time; no COPY.
    """
    import subprocess
    import time

    from lykta.process import free_port

    node = shutil.which("node")
    assert node, "Node.js is missing; ./bootstrap test installs it (scripts/install-test-tools)"
    assert (TSL_DIR / "node_modules").exists(), "tests/tsl/node_modules is missing; run scripts/install-test-tools"
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([node, "server.mjs", str(port)], cwd=TSL_DIR, stdout=subprocess.PIPE, stderr=log)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("READY"):
            log.seek(0)
            raise AssertionError(f"the TSL test server did not start: {line!r} {log.read()[-2000:]!r}")
        url = f"postgresql://postgres:unused@127.0.0.1:{port}/postgres?sslmode=disable"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(url, connect_timeout=5):
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()


@pytest.fixture
def broker() -> Iterator[str]:
    """A private Mosquitto with lykta's configuration for one test; yields its mqtt:// URL."""
    from lykta import mosquitto

    path = make_state_dir("lykta-broker-")
    info = mosquitto.start(path, None)
    try:
        yield info.url
    finally:
        mosquitto.stop(info)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def town_url(db_url: str) -> str:
    """A migrated database with the tenant solvik and the sample inventory imported."""
    from floor import inventory
    from storage import assets, tenants

    with psycopg.connect(db_url, autocommit=True) as conn:
        tenants.upsert(conn, "solvik", "Solvik kommun", "sv", "Europe/Stockholm")
        records = inventory.parse_file(Path(__file__).resolve().parent.parent / "examples" / "solvik.csv")
        assets.import_records(conn, "solvik", records, "solvik.csv")
    return db_url


from tests.helpers import Inbox, Receiver  # noqa: E402 - fixtures below use them


class Api:
    """``lykta api`` served by uvicorn on a free loopback port, with a clock the test moves."""

    def __init__(self, url: str, base: str, clock: list[float], app: Any = None) -> None:
        self.url = url
        self.base = base
        self.clock = clock
        self.app = app
        """the FastAPI application (its connection pool is ``app.state.pool``)"""

    def token(self, tenant_id: str, role: str, crew_id: str | None = None) -> str:
        from cases.api_auth import hash_token, new_token
        from storage import api as api_store

        token = new_token()
        with psycopg.connect(self.url, autocommit=True) as conn:
            api_store.create_token(conn, hash_token(token), tenant_id, role, crew_id, "test")
        return token


@pytest.fixture
def api(town_url: str) -> Iterator[Api]:
    from cases.api import create_app
    from cases.policy import Policies
    from tests.helpers import served
    from tests.integration.test_rules import NIGHT

    clock = [NIGHT + 3600]
    app = create_app(town_url, Policies(), clock=lambda: clock[0], pool_size=2)
    with served(app) as base:
        yield Api(town_url, base, clock, app)


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    """A real SMTP server (aiosmtpd) on a free loopback port, keeping what it receives."""
    from aiosmtpd.controller import Controller

    from lykta.process import free_port

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server standing in for a crew's or a maintenance system's webhook endpoint."""
    r = Receiver()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


# -- the shape of the suite ----------------------------------------------------------------------------------------

SERVICE_FIXTURES = {"service_state", "broker", "tsl_server", "state_dir"}
"""Fixtures that start PostgreSQL, Mosquitto or PGlite (directly or through fixtures built on them)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its folder (unit, integration, e2e), so ``-m unit`` runs what needs no service; a test in
    tests/unit that asks for a service is an error, so the fast folder stays fast."""
    del config
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in ("unit", "integration", "e2e"):
            item.add_marker(folder)
        used = SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if folder == "unit" and used:
            raise pytest.UsageError(f"{item.nodeid} is a unit test but starts services ({', '.join(sorted(used))})")

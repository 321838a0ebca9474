"""``lykta services``: private PostgreSQL and Mosquitto started, stopped and restarted on real binaries."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import psycopg
import pytest

from floor.errors import ServiceError
from lykta import services
from lykta.process import accepts_connections, is_alive


def _mqtt_connack(port: int, login: tuple[str, str] | None = None) -> bytes:
    """A bare MQTT 3.1.1 CONNECT (with the user name as client id when logging in): proves a broker answers, not
    just that a port is open."""
    client_id = (login[0] if login else "probe").encode()
    flags, payload = 0x02, len(client_id).to_bytes(2, "big") + client_id
    if login:
        flags |= 0xC0
        for part in login:
            payload += len(part.encode()).to_bytes(2, "big") + part.encode()
    body = bytes([0x00, 0x04]) + b"MQTT" + bytes([0x04, flags, 0x00, 0x3C]) + payload
    connect = bytes([0x10, len(body)]) + body
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(connect)
        return sock.recv(4)


def test_up_down_up_keeps_the_data(state_dir: Path) -> None:
    state = services.up(state_dir)
    assert state.postgres is not None and state.mqtt is not None
    assert state.postgres.host == state.mqtt.host == "127.0.0.1"
    assert Path(state.postgres.data_dir).is_relative_to(state_dir.resolve())
    assert _mqtt_connack(state.mqtt.port) == bytes([0x20, 0x02, 0x00, 0x00])
    with psycopg.connect(state.postgres.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
    assert preload == ("timescaledb",)
    recorded = json.loads((state_dir / "services.json").read_text())
    assert recorded["postgres"]["pid"] == state.postgres.pid
    assert (state_dir / "services.json").stat().st_mode & 0o077 == 0

    said = services.down(state_dir)
    assert said == ["mosquitto stopped", "postgresql stopped"]
    assert not is_alive(state.postgres.pid)
    assert not is_alive(state.mqtt.pid)
    assert not accepts_connections(state.postgres.port)
    assert services.down(state_dir) == ["mosquitto was not running", "postgresql was not running"]
    assert all(" stopped" in line for line in services.status(state_dir))

    again = services.up(state_dir)
    assert again.postgres is not None
    assert again.postgres.password == state.postgres.password
    with psycopg.connect(again.postgres.url(), autocommit=True) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("still here",)]
    status = services.status(state_dir)
    assert status[0].startswith(f"postgresql running: 127.0.0.1:{again.postgres.port} pid {again.postgres.pid}")
    assert status[1].startswith("mosquitto running: mqtt://127.0.0.1:")


def test_up_while_running_keeps_the_running_services(state_dir: Path) -> None:
    first = services.up(state_dir)
    second = services.up(state_dir)
    assert first == second


def test_a_taken_port_is_not_reused(state_dir: Path) -> None:
    first = services.up(state_dir)
    assert first.postgres is not None and first.mqtt is not None
    services.down(state_dir)
    with socket.socket() as squatter:
        # the stopped server's closed connections may still hold the port in TIME_WAIT: a listener may bind anyway
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", first.postgres.port))
        squatter.listen()
        again = services.up(state_dir)
        assert again.postgres is not None
        assert again.postgres.port != first.postgres.port
        with psycopg.connect(again.postgres.url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_without_services_commands_say_what_to_do(state_dir: Path) -> None:
    with pytest.raises(ServiceError, match="run `lykta services up`"):
        services.database_url(None, state_dir)
    assert services.status(state_dir)[0].startswith("postgresql: never started")
    assert services.database_url("postgresql://x@127.0.0.1/db", state_dir) == "postgresql://x@127.0.0.1/db"


def test_a_damaged_state_file_is_reported(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "services.json").write_text("{not json")
    with pytest.raises(ServiceError, match="is damaged"):
        services.status(state_dir)


def test_a_state_directory_below_a_private_directory_works_as_root(state_dir: Path) -> None:
    import os
    import shutil

    if os.geteuid() != 0:
        pytest.skip("only root hands the data to service accounts; as another user the services run as that user")
    private = state_dir.parent / "private"
    private.mkdir(mode=0o700)
    inner = private / "clone" / ".lykta"
    try:
        state = services.up(inner)
        assert state.postgres is not None
        assert (inner / "postgres").is_symlink() and (inner / "mosquitto").is_symlink()
        outside = (inner / "postgres").resolve().parent
        assert outside.parent == services.OUTSIDE_ROOT
        with psycopg.connect(state.postgres.url(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept AS SELECT 42 AS answer")
        services.down(inner)
        again = services.up(inner)
        assert again.postgres is not None
        with psycopg.connect(again.postgres.url(), autocommit=True) as conn:
            assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)
    finally:
        services.down(inner)
        if (inner / "postgres").is_symlink():
            shutil.rmtree((inner / "postgres").resolve().parent, ignore_errors=True)


def test_turning_broker_security_on_restarts_the_broker_with_it(state_dir: Path) -> None:
    from lykta.mosquitto import BrokerSecurity

    plain = services.up(state_dir)
    assert plain.mqtt is not None
    assert _mqtt_connack(plain.mqtt.port) == bytes([0x20, 0x02, 0x00, 0x00])
    secure = services.up(state_dir, security=BrokerSecurity(authenticate=True))
    assert secure.mqtt is not None and secure.mqtt.pid != plain.mqtt.pid
    assert secure.postgres == plain.postgres  # the database keeps running
    assert _mqtt_connack(secure.mqtt.port) == bytes([0x20, 0x02, 0x00, 0x05])  # anonymous: not authorized
    assert services.up(state_dir, security=BrokerSecurity(authenticate=True)) == secure  # unchanged: kept


def test_services_up_refuses_anonymous_clients_unless_told_otherwise(state_dir: Path) -> None:
    """Broker security is the default of ``lykta services up``; anonymous access only by an explicit flag."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")} | {"LYKTA_STATE_DIR": str(state_dir)}

    def up(*flags: str) -> services.ServiceState:
        done = subprocess.run([sys.executable, "-m", "lykta.cli", "services", "up", "--ephemeral", *flags],
                              capture_output=True, text=True, env=env, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return services.ServiceState.load(state_dir)

    secure = up()
    assert secure.mqtt is not None
    conf = (state_dir / "mosquitto" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "mosquitto_dynamic_security.so" in conf
    assert _mqtt_connack(secure.mqtt.port) == bytes([0x20, 0x02, 0x00, 0x05])  # not authorized
    assert (state_dir / "secrets" / "mqtt-admin").stat().st_mode & 0o777 == 0o600
    open_to_all = up("--anonymous")
    assert open_to_all.mqtt is not None and open_to_all.mqtt.pid != secure.mqtt.pid
    assert _mqtt_connack(open_to_all.mqtt.port) == bytes([0x20, 0x02, 0x00, 0x00])

    # Accounts provisioned while the broker runs without them are loaded from the registry at its next secure start.
    def lykta(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "lykta.cli", *args], capture_output=True, text=True, env=env,
                              timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    lykta("db", "migrate")
    lykta("tenants", "add", "solvik", "--name", "Solvik")
    lykta(
        "assets", "import", str(Path(__file__).resolve().parents[2] / "examples" / "solvik.csv"), "--tenant", "solvik"
    )
    said = lykta("devices", "provision", "--tenant", "solvik", "--gateway")
    assert "running without accounts (--anonymous)" in said
    secure_again = up()
    assert secure_again.mqtt is not None
    login = (state_dir / "secrets" / "mqtt-gateway-solvik").read_text().strip()
    assert _mqtt_connack(secure_again.mqtt.port, ("gateway-solvik", login)) == bytes([0x20, 0x02, 0x00, 0x00])
    assert _mqtt_connack(secure_again.mqtt.port, ("gateway-solvik", "wrong")) == bytes([0x20, 0x02, 0x00, 0x05])

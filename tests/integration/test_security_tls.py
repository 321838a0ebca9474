"""The whole chain with security on, as an operator runs it: a broker that refuses anonymous clients and
speaks only TLS (certificates from a throwaway CA made here), provisioned accounts, ingest and the simulators
over mqtts, and no secret in any output or log."""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trustme

from floor.mqtt_login import client_tls
from lykta import services
from simulators.publisher import WireError, connect
from tests.conftest import make_state_dir
from tests.helpers import EXAMPLES, wait_for


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a broker certificate for 127.0.0.1 and localhost, as PEM files."""
    where = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": where / "ca.pem", "cert": where / "broker.pem", "key": where / "broker.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    files["cert"].write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return files


@pytest.fixture
def secure_state(pki: dict[str, Path]) -> Iterator[tuple[Path, dict[str, str]]]:
    state = make_state_dir("lykta-secure-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")}
    env |= {
        "LYKTA_STATE_DIR": str(state),
        "LYKTA_MQTT_SECURITY": "true",
        "LYKTA_MQTT_TLS_CERT_FILE": str(pki["cert"]),
        "LYKTA_MQTT_TLS_KEY_FILE": str(pki["key"]),
        "LYKTA_MQTT_CA_FILE": str(pki["ca"]),
    }
    try:
        yield state, env
    finally:
        services.down(state)
        shutil.rmtree(state, ignore_errors=True)


def lykta(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "lykta.cli", *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def test_secure_installation_from_the_command_line(secure_state: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    state, env = secure_state
    up = lykta(env, "services", "up", "--ephemeral")
    assert "mosquitto:  mqtts://127.0.0.1:" in up.stdout
    conf = (state / "mosquitto" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "certfile" in conf and "mosquitto_dynamic_security.so" in conf
    lykta(env, "db", "migrate")
    lykta(env, "tenants", "add", "solvik", "--name", "Solvik")
    lykta(env, "assets", "import", str(EXAMPLES / "solvik.csv"), "--tenant", "solvik")

    recorded = services.ServiceState.load(state)
    assert recorded.mqtt is not None and recorded.postgres is not None
    url, db_url, port = recorded.mqtt.url, recorded.postgres.url(), recorded.mqtt.port
    with psycopg.connect(db_url) as conn:
        devices = conn.execute("SELECT count(*) FROM devices WHERE tenant_id = 'solvik'").fetchone()
    assert devices is not None and devices[0] > 200

    secrets = tmp_path / "solvik-secrets.csv"
    provisioned = lykta(
        env, "devices", "provision", "--tenant", "solvik", "--all", "--gateway", "--secrets", str(secrets)
    )
    assert f"devices: {devices[0]} account(s) created" in provisioned.stdout, provisioned.stdout
    assert "gateway: account gateway-solvik" in provisioned.stdout
    assert f"broker: {devices[0] + 2} account(s) created or renewed, 0 removed (live)" in provisioned.stdout
    assert secrets.stat().st_mode & 0o777 == 0o600
    with secrets.open() as fh:
        rows = list(csv.DictReader(fh))
    passwords = {r["username"]: r["password"] for r in rows}
    assert len(passwords) == devices[0] + 1 and all(len(p) >= 32 for p in passwords.values())
    ingest_secret = (state / "secrets" / "mqtt-ingest").read_text().strip()
    assert (state / "secrets" / "mqtt-ingest").stat().st_mode & 0o777 == 0o600
    every_secret = [*passwords.values(), ingest_secret]
    assert not any(s in provisioned.stdout + provisioned.stderr for s in every_secret)
    # Running it again creates nothing and refuses to write secrets over the file.
    again = subprocess.run(
        [sys.executable, "-m", "lykta.cli", "devices", "provision", "--tenant", "solvik", "--all", "--secrets",
         str(secrets)], capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 1 and "exists; secrets are never written over an existing file" in again.stderr

    # Without the CA the broker's certificate is not trusted; in plain text nothing is spoken at all.
    async def refused(tls: bool) -> str:
        try:
            context = client_tls("mqtts://x", None) if tls else None  # the system's CAs only
            await connect("127.0.0.1", port, "stranger", login=("gateway-solvik", passwords["gateway-solvik"]),
                          tls=context)  # fmt: skip
        except WireError as exc:
            return str(exc)
        return "connected"

    assert "CERTIFICATE_VERIFY_FAILED" in asyncio.run(refused(tls=True))
    assert "cannot publish to the MQTT broker" in asyncio.run(refused(tls=False))

    log = tmp_path / "ingest.log"
    with log.open("w") as out:
        ingest = subprocess.Popen(
            [sys.executable, "-m", "lykta.cli", "ingest"], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        wait_for(lambda: "(account lykta-ingest)" in log.read_text(), 60, "ingest connected over mqtts")
        gateway = env | {"LYKTA_MQTT_USERNAME": "gateway-solvik", "LYKTA_MQTT_PASSWORD": passwords["gateway-solvik"]}
        published = lykta(gateway, "simulate", "--fleet", str(EXAMPLES / "solvik.csv"), "--duration", "1h",
                          "--start", "now", "--asap", "--seed", "7")  # fmt: skip
        assert "published" in published.stdout
        sent = int(published.stdout.split()[1].replace(",", ""))
        assert sent > 1000

        def stored() -> int:
            with psycopg.connect(db_url) as conn:
                row = conn.execute("SELECT sum(received) FROM ingest_stats").fetchone()
                return int(row[0] or 0) if row else 0

        wait_for(lambda: stored() >= sent, 120, f"ingest to receive the {sent} messages")
        with psycopg.connect(db_url) as conn:
            readings = conn.execute("SELECT count(*) FROM telemetry").fetchone()
            letters = conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY 1").fetchall()
        assert readings is not None and readings[0] > 1000
        assert letters == []
    finally:
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(60)
    assert url.startswith("mqtts://")
    # No secret in what ingest logged, what the broker logged or the simulator printed.
    logged = log.read_text() + (state / "mosquitto" / "mosquitto.log").read_text(errors="replace")
    logged += published.stdout + published.stderr
    assert not [s for s in every_secret if s in logged]

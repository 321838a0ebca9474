"""Device identity at the broker: accounts, client ids, passwords and topic ACLs from the registry, enforced by
Mosquitto's dynamic-security plugin, against the real Mosquitto."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from floor import inventory
from floor.mqtt_login import INGEST_USERNAME
from ingest.service import client_id_for as ingest_client_id
from lykta import broker_accounts, mosquitto
from lykta.broker_accounts import Issued
from lykta.mosquitto import BrokerSecurity, MqttInfo
from storage import accounts, assets, tenants
from tests.conftest import make_state_dir
from tests.helpers import RunningIngest, ingest_settings, wait_for

INVENTORY = (
    "asset_id,kind,lat,lon,rated_power_w,device_id\n"
    "L1,streetlight,56.0,12.7,50,D1\nL2,streetlight,56.0,12.8,50,D2\nL3,streetlight,56.0,12.9,50,D3:x\n"
)


@dataclass
class Client:
    """A paho MQTT v5 client on its own network thread, recording what the broker answered."""

    port: int
    username: str | None
    password: str | None = field(repr=False)
    client_id: str | None = None
    """default: the user name, which the broker requires of devices and gateways"""
    connack: ReasonCode | None = None
    received: list[tuple[str, bytes]] = field(default_factory=list)
    acks: dict[int, ReasonCode] = field(default_factory=dict)
    granted: dict[int, list[ReasonCode]] = field(default_factory=dict)
    answered: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        client_id = self.client_id if self.client_id is not None else (self.username or "")
        self.mqtt = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        if self.username is not None:
            self.mqtt.username_pw_set(self.username, self.password)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_message = lambda _c, _u, m: self.received.append((m.topic, bytes(m.payload)))
        self.mqtt.on_publish = lambda _c, _u, mid, rc, _p: self.acks.__setitem__(mid, rc)
        self.mqtt.on_subscribe = lambda _c, _u, mid, rcs, _p: self.granted.__setitem__(mid, list(rcs))

    def _on_connect(self, _c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.connack = rc
        self.answered.set()

    def connect(self) -> ReasonCode:
        self.mqtt.connect("127.0.0.1", self.port)
        self.mqtt.loop_start()
        assert self.answered.wait(10), "no CONNACK within 10 s"
        assert self.connack is not None
        return self.connack

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        info = self.mqtt.publish(topic, payload, qos=1)
        wait_for(lambda: info.mid in self.acks, 10, f"PUBACK for {topic}")
        return self.acks[info.mid]

    def subscribe(self, topic: str) -> ReasonCode:
        _, mid = self.mqtt.subscribe(topic, qos=1)
        assert mid is not None
        wait_for(lambda: mid in self.granted, 10, f"SUBACK for {topic}")
        return self.granted[mid][0]

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def connack_of(port: int, username: str | None, password: str | None, client_id: str | None = None) -> ReasonCode:
    client = Client(port, username, password, client_id)
    try:
        return client.connect()
    finally:
        client.close()


@dataclass
class SecureBroker:
    info: MqttInfo
    root: Path
    admin: tuple[str, str]

    def sync(self, conn: psycopg.Connection, issued: list[Issued]) -> list[str]:
        """Apply the registry's accounts (with the passwords issued now) to the running broker."""
        wanted = accounts.for_broker(conn)
        return broker_accounts.apply_changes("127.0.0.1", self.info.port, self.admin, wanted, issued)

    def saved(self) -> dict[str, Any]:
        """The plugin's file as the broker last saved it."""
        return dict(orjson.loads((self.root / broker_accounts.DYNSEC_FILE).read_bytes()))


@pytest.fixture
def town(conn: psycopg.Connection) -> dict[str, dict[str, Issued]]:
    """Two municipalities with a device D1 each; every device and the ingest service get an account."""
    issued: dict[str, dict[str, Issued]] = {}
    for tenant in ("north", "south"):
        tenants.upsert(conn, tenant, tenant.title())
        csv = INVENTORY if tenant == "north" else INVENTORY.splitlines()[0] + "\nL1,streetlight,56.1,12.7,50,D1\n"
        assets.import_records(conn, tenant, inventory.parse_csv(csv), "test")
        made, kept = broker_accounts.provision_devices(conn, tenant, None, rotate=False)
        assert kept == 0
        issued[tenant] = {i.device_id or "": i for i in made}
    issued["lykta"] = {"ingest": broker_accounts.provision_ingest(conn)}
    return issued


@pytest.fixture
def secure_broker(conn: psycopg.Connection, town: dict[str, dict[str, Issued]]) -> Iterator[SecureBroker]:
    state = make_state_dir("lykta-secure-broker-")
    root = (state / "mosquitto").resolve()
    admin = broker_accounts.admin_login(state, create=True)
    assert admin is not None
    broker_accounts.write_broker_file(accounts.for_broker(conn), root, admin)
    info = mosquitto.start(state, None, BrokerSecurity(authenticate=True))
    try:
        yield SecureBroker(info, root, admin)
    finally:
        mosquitto.stop(info)
        shutil.rmtree(state, ignore_errors=True)


def stored(db_url: str, base: float) -> set[int]:
    """The stored readings, by their device time's seconds after ``base`` (reading n is sent at base + n)."""
    with psycopg.connect(db_url) as c:
        rows = c.execute("SELECT extract(epoch FROM device_time)::float8 FROM telemetry").fetchall()
    return {round(r[0] - base) for r in rows}


def topic(tenant: str, device: str, channel: str = "telemetry") -> str:
    return f"lykta/{tenant}/streetlight_controller/{device}/{channel}"


def test_only_known_accounts_connect(secure_broker: SecureBroker, town: dict[str, dict[str, Issued]]) -> None:
    port = secure_broker.info.port
    d1 = town["north"]["D1"]
    # Mosquitto answers every refusal with "Not authorized" (it does not tell which part was wrong).
    assert connack_of(port, None, None) == "Not authorized"  # anonymous
    assert connack_of(port, d1.username, "not-the-password") == "Not authorized"
    assert connack_of(port, d1.username, town["north"]["D2"].password) == "Not authorized"
    assert connack_of(port, "device-999999", d1.password) == "Not authorized"
    assert connack_of(port, d1.username, d1.password) == "Success"
    # A device id with ':' (the password file's separator) still gets a working account.
    odd = town["north"]["D3:x"]
    assert connack_of(port, odd.username, odd.password) == "Success"


def test_a_device_speaks_only_for_itself(secure_broker: SecureBroker, town: dict[str, dict[str, Issued]]) -> None:
    port = secure_broker.info.port
    ingest = Client(port, INGEST_USERNAME, town["lykta"]["ingest"].password)
    device = Client(port, town["north"]["D1"].username, town["north"]["D1"].password)
    try:
        assert ingest.connect() == "Success" and device.connect() == "Success"
        assert ingest.subscribe("lykta/+/+/+/+") == "Granted QoS 1"
        # Another device of the same municipality, the same device id in another municipality, a command.
        for forged in (topic("north", "D2"), topic("south", "D1"), topic("north", "D1", "command")):
            assert device.publish(forged, b'{"metrics": {"power_w": 1}}') == "Not authorized", forged
        for own in ("telemetry", "status", "event"):
            assert device.publish(topic("north", "D1", own), own.encode()) == "Success"
        # Messages of one connection arrive in order: once the last one is here, nothing forged came before it.
        wait_for(lambda: len(ingest.received) >= 3, 10, "the device's own messages at ingest")
        assert [t for t, _ in ingest.received] == [topic("north", "D1", c) for c in ("telemetry", "status", "event")]
        # Reading: a device may subscribe to its own command topic and nothing else (the dynamic-security plugin
        # checks subscriptions; the password and ACL files of earlier versions granted any), and even a
        # subscription it had would deliver nothing of its neighbour's.
        for other in ("lykta/#", "#", "$share/lykta/lykta/+/+/+/+", topic("north", "D2", "command"), "$SYS/#"):
            assert device.subscribe(other) == "Not authorized", other
        neighbour = Client(port, town["north"]["D2"].username, town["north"]["D2"].password)
        try:
            assert neighbour.connect() == "Success"
            assert neighbour.publish(topic("north", "D2"), b"neighbour") == "Success"
        finally:
            neighbour.close()
        wait_for(lambda: (topic("north", "D2"), b"neighbour") in ingest.received, 10, "the neighbour at ingest")
        # A copy for the device would have been written to its connection before the answer to a later request.
        assert device.subscribe(topic("north", "D1", "command")) == "Granted QoS 1"
        assert device.received == []
        # The ingest account reads everything and publishes nothing.
        assert ingest.publish(topic("north", "D1"), b"{}") == "Not authorized"
    finally:
        ingest.close()
        device.close()


def test_gateway_publishes_for_its_municipality_only(
    conn: psycopg.Connection, secure_broker: SecureBroker, town: dict[str, dict[str, Issued]]
) -> None:
    gateway = broker_accounts.provision_gateway(conn, "north")
    assert secure_broker.sync(conn, [gateway])[0] == "broker: 1 account(s) created or renewed, 0 removed (live)"
    port = secure_broker.info.port
    assert connack_of(port, gateway.username, gateway.password) == "Success"
    assert connack_of(port, gateway.username, gateway.password, client_id="gateway-south") == "Not authorized"
    client = Client(port, gateway.username, gateway.password)
    ingest = Client(port, INGEST_USERNAME, town["lykta"]["ingest"].password)
    try:
        client.connect()
        ingest.connect()
        ingest.subscribe("lykta/#")
        assert client.publish(topic("south", "D1"), b"{}") == "Not authorized"
        assert client.publish(topic("north", "D2", "command"), b"{}") == "Not authorized"
        assert client.publish(topic("north", "D2"), b"{}") == "Success"
        assert client.publish(topic("north", "D1", "status"), b"online") == "Success"
        assert client.subscribe(topic("north", "D2", "command")) == "Granted QoS 1"
        assert client.subscribe(topic("south", "D1", "command")) == "Not authorized"
        assert client.subscribe("lykta/north/#") == "Not authorized"
        wait_for(lambda: len(ingest.received) >= 2, 10, "the gateway's messages at ingest")
        assert ingest.received == [(topic("north", "D2"), b"{}"), (topic("north", "D1", "status"), b"online")]
    finally:
        client.close()
        ingest.close()


def test_rotation_and_retirement_take_effect_at_once(
    conn: psycopg.Connection, secure_broker: SecureBroker, town: dict[str, dict[str, Issued]]
) -> None:
    port = secure_broker.info.port
    old = town["north"]["D2"]
    made, kept = broker_accounts.provision_devices(conn, "north", ["D2"], rotate=True)
    assert kept == 0 and [i.device_id for i in made] == ["D2"] and made[0].username == old.username
    assert made[0].password != old.password
    stored = conn.execute("SELECT password_hash FROM mqtt_accounts WHERE username = %s", (old.username,)).fetchone()
    assert stored is not None and made[0].password not in stored[0]
    assert broker_accounts.verify_password(made[0].password, stored[0])
    connected = Client(port, old.username, old.password)
    try:
        assert connected.connect() == "Success"
        secure_broker.sync(conn, made)
        assert connack_of(port, old.username, old.password) == "Not authorized"
        assert connack_of(port, made[0].username, made[0].password) == "Success"
        wait_for(lambda: not connected.mqtt.is_connected(), 10, "the old password's connection cut")
    finally:
        connected.close()

    # A retired device loses its account at the broker, and the broker's saved file forgets it.
    d1 = town["north"]["D1"]
    conn.execute("UPDATE devices SET status = 'retired' WHERE tenant_id = 'north' AND device_id = 'D1'")
    assert secure_broker.sync(conn, [])[0] == "broker: 0 account(s) created or renewed, 1 removed (live)"
    assert connack_of(port, d1.username, d1.password) == "Not authorized"
    names = {c["username"] for c in secure_broker.saved()["clients"]}
    assert d1.username not in names and made[0].username in names


def test_password_hashes_are_mosquittos_format() -> None:
    mosquitto_passwd = shutil.which("mosquitto_passwd")
    salt = bytes(range(12))
    hashed = broker_accounts.hash_password("secret", salt=salt)
    assert hashed.startswith("$7$101$AAECAwQFBgcICQoL$")
    assert broker_accounts.verify_password("secret", hashed)
    assert not broker_accounts.verify_password("Secret", hashed)
    assert not broker_accounts.verify_password("secret", "$6$not$ours")
    if mosquitto_passwd is None:  # the broker test above proves the format in any case
        return
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pw"
        subprocess.run([mosquitto_passwd, "-c", "-b", str(path), "someone", "s3cret"], check=True)
        theirs = path.read_text().strip().split(":", 1)[1]
    assert broker_accounts.verify_password("s3cret", theirs)
    assert not broker_accounts.verify_password("s3creT", theirs)


def test_provisioning_refuses_unknown_devices_and_tenants(conn: psycopg.Connection) -> None:
    tenants.upsert(conn, "north", "North")
    with pytest.raises(broker_accounts.ProvisionError, match="no devices to provision"):
        broker_accounts.provision_devices(conn, "north", None, rotate=False)
    assets.import_records(conn, "north", inventory.parse_csv(INVENTORY), "test")
    with pytest.raises(broker_accounts.ProvisionError, match="no device NOPE in tenant 'north'"):
        broker_accounts.provision_devices(conn, "north", ["D1", "NOPE"], rotate=False)
    with pytest.raises(broker_accounts.ProvisionError, match="no tenant 'west'"):
        broker_accounts.provision_gateway(conn, "west")
    assert conn.execute("SELECT count(*) FROM mqtt_accounts").fetchone() == (0,)


def test_ingest_says_which_account_the_broker_refused(
    secure_broker: SecureBroker, town: dict[str, dict[str, Issued]]
) -> None:
    import asyncio

    from ingest.errors import BrokerUnavailable
    from ingest.mqtt import MqttLink

    async def attempt(username: str | None, password: str | None) -> str:
        link = MqttLink("127.0.0.1", secure_broker.info.port, "ingest-probe", ["lykta/#"], lambda *_: None,
                        receive_maximum=10, session_expiry_s=0, username=username, password=password)  # fmt: skip
        try:
            await link.connect()
        except BrokerUnavailable as exc:
            return str(exc)
        finally:
            await link.disconnect()
        return "connected"

    wrong = asyncio.run(attempt(INGEST_USERNAME, "wrong-s3cret"))
    assert "refused the connection with account 'lykta-ingest': not authorized" in wrong
    assert "lykta devices provision" in wrong and "wrong-s3cret" not in wrong
    assert "no account (anonymous)" in asyncio.run(attempt(None, None))
    assert asyncio.run(attempt(INGEST_USERNAME, town["lykta"]["ingest"].password)) == "connected"


def test_provisioning_for_a_broker_lykta_does_not_run(cli_env: dict[str, str], tmp_path: Path) -> None:
    """--broker-dir: the dynamic-security file goes where the operator's Mosquitto reads it; the ingest password
    goes into the secrets file (there is no local state to keep it in); nothing is signalled."""
    import csv
    import subprocess
    import sys

    def lykta(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**cli_env, "LYKTA_STATE_DIR": str(tmp_path / "no-local-services")}
        return subprocess.run([sys.executable, "-m", "lykta.cli", *args], capture_output=True, text=True, env=env,
                              timeout=120, check=False)  # fmt: skip

    with psycopg.connect(cli_env["LYKTA_DATABASE_URL"], autocommit=True) as conn:
        tenants.upsert(conn, "north", "North")
        assets.import_records(conn, "north", inventory.parse_csv(INVENTORY), "test")
    refused = lykta("devices", "provision", "--tenant", "north", "--all", "--secrets", str(tmp_path / "s.csv"))
    assert refused.returncode == 1 and "name the broker's directory with --broker-dir" in refused.stderr
    no_file = lykta("devices", "provision", "--tenant", "north", "--all", "--broker-dir", str(tmp_path / "b"))
    assert no_file.returncode == 1 and "--secrets FILE is needed" in no_file.stderr
    no_tenant = lykta("devices", "provision", "--all", "--broker-dir", str(tmp_path / "b"))
    assert no_tenant.returncode == 1 and "--tenant is needed" in no_tenant.stderr
    assert not (tmp_path / "b").exists()  # refused before anything was written

    done = lykta("devices", "provision", "--tenant", "north", "--all", "--ingest", "--broker-dir",
                 str(tmp_path / "b"), "--secrets", str(tmp_path / "s.csv"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "devices: 3 account(s) created" in done.stdout and "broker: 4 account(s) in" in done.stdout
    assert "live" not in done.stdout and "not running" not in done.stdout
    with (tmp_path / "s.csv").open() as fh:
        issued = {r["username"]: r for r in csv.DictReader(fh)}
    assert set(issued) == {"device-1", "device-2", "device-3", "lykta-ingest"}
    assert {r["device"] for r in issued.values()} == {"D1", "D2", "D3:x", ""}
    text = (tmp_path / "b" / broker_accounts.DYNSEC_FILE).read_text()
    assert all(r["password"] not in text for r in issued.values())
    saved = orjson.loads(text)
    clients = {c["username"]: c for c in saved["clients"]}
    assert set(clients) == set(issued)  # no administrator: the operator's broker has its own
    for name, c in clients.items():
        as_hash = f"$7${c['iterations']}${c['salt']}${c['password']}"
        assert broker_accounts.verify_password(issued[name]["password"], as_hash), name
    assert clients["device-3"]["clientid"] == "device-3" and "clientid" not in clients["lykta-ingest"]
    roles = {r["rolename"]: r["acls"] for r in saved["roles"]}
    assert {"acltype": "subscribePattern", "topic": "lykta/#", "allow": True} in roles["lykta-ingest"]
    assert {"acltype": "publishClientSend", "topic": "lykta/north/streetlight_controller/D3:x/telemetry",
            "allow": True} in roles["device-3"]  # fmt: skip
    assert saved["defaultACLAccess"]["subscribe"] is False
    assert not any(r["password"] in done.stdout + done.stderr for r in issued.values())


def test_a_device_in_ingests_share_group_takes_nothing_from_ingest(
    db_url: str, secure_broker: SecureBroker, town: dict[str, dict[str, Issued]]
) -> None:
    """A device account subscribed to `$share/lykta/lykta/+/+/+/+` was picked round robin by Mosquitto, which then
    refused delivery by ACL and dropped the message: 20 of 40 readings lost, acknowledged to the publisher, no dead
    letter. The broker now refuses the subscription, and ingest's subscription is its own (a plain one) anyway."""
    password = town["lykta"]["ingest"].password
    settings = ingest_settings(mqtt_username=INGEST_USERNAME, mqtt_password=password)
    attacker = Client(secure_broker.info.port, town["north"]["D2"].username, town["north"]["D2"].password)
    device = Client(secure_broker.info.port, town["north"]["D1"].username, town["north"]["D1"].password)
    base = float(int(time.time()) - 3600)
    try:
        with RunningIngest(settings, db_url, secure_broker.info.url):
            assert attacker.connect() == "Success" and device.connect() == "Success"
            assert attacker.subscribe("$share/lykta/lykta/+/+/+/+") == "Not authorized"
            for n in range(40):
                payload = orjson.dumps({"ts": base + n, "metrics": {"power_w": 40}})
                assert device.publish(topic("north", "D1"), payload) == "Success"

            wait_for(lambda: len(stored(db_url, base)) == 40, 30, "the 40 readings")
            assert stored(db_url, base) == set(range(40))
            assert attacker.received == []
    finally:
        attacker.close()
        device.close()


def test_a_device_cannot_take_ingests_client_id(
    db_url: str, secure_broker: SecureBroker, town: dict[str, dict[str, Issued]]
) -> None:
    """A device account connecting with ingest's client id (``lykta-ingest-<host>``, guessable) used to take over
    ingest's connection about once a second: 7 of 20 readings lost. The broker binds every device's and
    gateway's client id to its account, so the attempt is refused and ingest keeps its session."""
    password = town["lykta"]["ingest"].password
    settings = ingest_settings(mqtt_username=INGEST_USERNAME, mqtt_password=password, ingest_client_id=None)
    client_id = ingest_client_id(settings)
    thief = town["north"]["D2"]
    device = Client(secure_broker.info.port, town["north"]["D1"].username, town["north"]["D1"].password)
    base = float(int(time.time()) - 3600)
    try:
        with RunningIngest(settings, db_url, secure_broker.info.url) as ingest:
            assert device.connect() == "Success"
            for n in range(20):
                refused = connack_of(secure_broker.info.port, thief.username, thief.password, client_id=client_id)
                assert refused == "Not authorized"
                other = connack_of(secure_broker.info.port, thief.username, thief.password, client_id="device-1")
                assert other == "Not authorized"  # nor another device's
                payload = orjson.dumps({"ts": base + n, "metrics": {"power_w": 40}})
                assert device.publish(topic("north", "D1"), payload) == "Success"

            wait_for(lambda: len(stored(db_url, base)) == 20, 30, "the 20 readings")
            assert stored(db_url, base) == set(range(20))
            link = ingest.service.link if ingest.service else None
            assert link is not None and link.generation == 1 and not link.lost.is_set()  # never taken over
    finally:
        device.close()

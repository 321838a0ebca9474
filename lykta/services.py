"""``lykta services up|down|status``: the private PostgreSQL and Mosquitto and the file recording them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from floor.config import Settings
from floor.errors import ServiceError
from lykta import ha, mosquitto, postgres
from lykta.broker_accounts import admin_login, write_broker_file
from lykta.mosquitto import BrokerSecurity, MqttInfo
from lykta.postgres import PostgresInfo
from lykta.process import Account, accepts_connections
from storage import accounts

log = logging.getLogger(__name__)

STATE_FILE = "services.json"


@dataclass(frozen=True)
class ServiceState:
    """Connection settings of the local services, as recorded in ``<state>/services.json``."""

    postgres: PostgresInfo | None = None
    mqtt: MqttInfo | None = None

    @classmethod
    def load(cls, state_dir: Path) -> ServiceState:
        path = state_dir / STATE_FILE
        if not path.exists():
            return cls()
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return cls(
                postgres=PostgresInfo.from_dict(data["postgres"]) if data.get("postgres") else None,
                mqtt=MqttInfo.from_dict(data["mqtt"]) if data.get("mqtt") else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceError(f"{path} is damaged ({exc}); remove it and run lykta services up") from exc

    def save(self, state_dir: Path) -> None:
        path = state_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        data = {
            "postgres": self.postgres.to_dict() if self.postgres else None,
            "mqtt": self.mqtt.to_dict() if self.mqtt else None,
        }
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
        tmp.replace(path)


OUTSIDE_ROOT = Path("/var/lib/lykta")


def place_data(state_dir: Path) -> list[str]:
    """Make sure the service accounts can reach their data directories; say where they went if moved.

    Run as root, PostgreSQL and Mosquitto run as their own accounts, which cannot
    enter a state directory below a private directory such as /root. Their data
    then lives in /var/lib/lykta/<name>-<hash> and ``<state>/postgres`` and
    ``<state>/mosquitto`` are symbolic links to it; everything else stays put.
    """
    accounts = [a for a in (Account.for_service("postgres"), Account.for_service("mosquitto")) if a]
    blocked = sorted(p for p in (a.blocking_parent(state_dir / "x") for a in accounts) if p is not None)
    if not blocked:
        return []
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    outside = OUTSIDE_ROOT / f"{state_dir.resolve().parent.name or 'root'}-{digest}"
    said = []
    for name in ("postgres", "mosquitto"):
        link = state_dir / name
        if link.is_symlink() or not link.exists():
            target = outside / name
            target.mkdir(parents=True, exist_ok=True)
            for directory in (OUTSIDE_ROOT, outside):
                directory.chmod(0o755)
            if not link.is_symlink():
                link.symlink_to(target)
            said.append(f"{name} data in {target}: the {name} account cannot enter {blocked[0]}")
    return said


def security_from(settings: Settings, *, anonymous: bool = False) -> BrokerSecurity | None:
    """The broker's security from the settings: accounts unless ``mqtt_security`` is off or ``anonymous`` is
    asked for explicitly, TLS when a certificate is configured."""
    authenticate = settings.mqtt_security and not anonymous
    if not authenticate and settings.mqtt_tls_cert_file is None:
        return None
    return BrokerSecurity(
        authenticate=authenticate, tls_cert=settings.mqtt_tls_cert_file, tls_key=settings.mqtt_tls_key_file
    )


def up(
    state_dir: Path,
    *,
    ephemeral: bool = False,
    postgres_settings: dict[str, str] | None = None,
    security: BrokerSecurity | None = None,
    autosave_s: int = mosquitto.AUTOSAVE_SECONDS,
    high_availability: bool = False,
) -> ServiceState:
    """Start both services (those already running are kept) and record where they run. With ``security``
    the broker refuses anonymous clients and knows the accounts provisioned in the database (if it is
    migrated), and serves TLS when a certificate is given. With ``high_availability`` the database is three
    PostgreSQL members under Patroni with etcd, in synchronous mode (lykta/ha.py)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)
    for line in place_data(state_dir):
        log.info(line)
    previous = ServiceState.load(state_dir)
    if high_availability:
        pg = None
        url = ha.up(state_dir, ephemeral=ephemeral).url()
    else:
        pg = postgres.start(state_dir.resolve(), previous.postgres, ephemeral=ephemeral, extra=postgres_settings)
        url = pg.url()
    ServiceState(postgres=pg, mqtt=previous.mqtt).save(state_dir)
    if security is not None and security.authenticate:
        accounts = broker_files_from_registry(url, state_dir)
        log.info("broker accounts: %s", "none yet (schema not migrated)" if accounts is None else accounts)
    mq = mosquitto.start(state_dir.resolve(), previous.mqtt, security, autosave_s=autosave_s)
    state = ServiceState(postgres=pg, mqtt=mq)
    state.save(state_dir)
    return state


def broker_files_from_registry(database_url: str, state_dir: Path) -> int | None:
    """Write the local broker's dynamic-security file from the database (with lykta's broker administrator);
    None when the database is not migrated yet."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if not accounts.migrated(conn):
            return None
        found = accounts.for_broker(conn)
    write_broker_file(found, (state_dir / "mosquitto").resolve(), admin_login(state_dir, create=True))
    return len(found)


def describe(state: ServiceState, state_dir: Path | None = None) -> list[str]:
    lines = []
    cluster = ha.HaCluster.load((state_dir / "ha").resolve()) if state_dir and not state.postgres else None
    if cluster is not None:
        roles = ha.roles(cluster)
        lines += [f"postgresql {m.name}: 127.0.0.1:{m.pg_port} ({roles[m.name]}, Patroni)" for m in cluster.members]
        lines.append(f"etcd: {', '.join(f'127.0.0.1:{e.client_port}' for e in cluster.etcd)}")
    if state.postgres:
        lines.append(f"postgresql: 127.0.0.1:{state.postgres.port} (pid {state.postgres.pid})")
    if state.mqtt:
        lines.append(f"mosquitto:  {state.mqtt.url} (pid {state.mqtt.pid})")
    return lines


def down(state_dir: Path) -> list[str]:
    """Stop both services by their recorded pids; say what happened to each."""
    state = ServiceState.load(state_dir)
    said = []
    if state.mqtt:
        said.append("mosquitto stopped" if mosquitto.stop(state.mqtt) else "mosquitto was not running")
    else:
        said.append("mosquitto was never started here")
    if state.postgres:
        said.append("postgresql stopped" if postgres.stop(state.postgres) else "postgresql was not running")
    elif (state_dir / "ha" / "cluster.json").exists():
        said += [f"high availability {line}" for line in ha.down(state_dir)]
    else:
        said.append("postgresql was never started here")
    return said


def status(state_dir: Path) -> list[str]:
    state = ServiceState.load(state_dir)
    lines = []
    if state.postgres:
        pg = state.postgres
        alive = postgres.running(pg) and accepts_connections(pg.port)
        lines.append(
            f"postgresql {'running' if alive else 'stopped'}: 127.0.0.1:{pg.port} pid {pg.pid} "
            f"database {pg.database} data {pg.data_dir}"
        )
    elif (cluster := ha.HaCluster.load((state_dir / "ha").resolve())) is not None:
        roles = ha.roles(cluster)
        lines += [
            f"postgresql {m.name} {'running' if roles[m.name] != 'down' else 'stopped'}: 127.0.0.1:{m.pg_port} "
            f"{roles[m.name]} (Patroni)"
            for m in cluster.members
        ]
    else:
        lines.append(f"postgresql: never started with state directory {state_dir}")
    if state.mqtt:
        mq = state.mqtt
        alive = mosquitto.running(mq) and accepts_connections(mq.port)
        lines.append(f"mosquitto {'running' if alive else 'stopped'}: {mq.url} pid {mq.pid} config {mq.config}")
    else:
        lines.append(f"mosquitto: never started with state directory {state_dir}")
    return lines


def database_url(settings_url: str | None, state_dir: Path) -> str:
    """The configured URL, else the one ``lykta services up`` recorded."""
    if settings_url:
        return settings_url
    state = ServiceState.load(state_dir)
    if state.postgres:
        return state.postgres.url()
    cluster = ha.HaCluster.load((state_dir / "ha").resolve())
    if cluster is not None:
        return cluster.url()
    raise ServiceError(
        f"no database configured: set LYKTA_DATABASE_URL or run `lykta services up` (state directory {state_dir})"
    )


def mqtt_url(settings_url: str | None, state_dir: Path) -> str:
    if settings_url:
        return settings_url
    state = ServiceState.load(state_dir)
    if not state.mqtt:
        raise ServiceError(
            f"no MQTT broker configured: set LYKTA_MQTT_URL or run `lykta services up` (state directory {state_dir})"
        )
    return state.mqtt.url

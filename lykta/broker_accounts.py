"""Broker accounts: passwords, and Mosquitto's password file and ACL written from the device registry.

Every device gets its own account (``device-<device key>``) that may publish only
on its own ``telemetry``, ``status`` and ``event`` topics and subscribe only to its
own ``command`` topic. A municipality's gateway account (``gateway-<tenant>``: a
field gateway, or the simulators) may publish for all devices of that
municipality and nothing else. The ingest service's account (``lykta-ingest``)
may only read ``lykta/#``. Anonymous clients are refused.

Passwords are 192-bit random secrets, shown once (written to a file only the
caller can read) and stored as PBKDF2-SHA512 hashes in Mosquitto's own format,
so the broker checks them and the database never holds them. With secrets this
long the hash only has to be one-way, not slow: ``mosquitto_passwd``'s default
of 101 iterations keeps a reconnect storm of ten thousand devices cheap.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from floor.errors import LyktaError
from floor.mqtt_login import INGEST_USERNAME, ingest_secret_file
from lykta.process import Account
from storage import accounts as store
from storage import tenants
from storage.accounts import BrokerAccount
from storage.errors import UnknownTenant

ITERATIONS = 101
PASSWORD_FILE = "passwd"  # noqa: S105 - a file name
ACL_FILE = "acl"
DEVICE_CHANNELS = ("telemetry", "status", "event")


class ProvisionError(LyktaError):
    """A provisioning request that cannot be carried out (unknown tenant or device, existing secrets file)."""


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """Mosquitto's ``$7$`` format: PBKDF2-SHA512 with a 12-byte salt, both base64-encoded."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, actual)


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def render_password_file(accounts: Iterable[BrokerAccount]) -> str:
    return "".join(f"{a.username}:{a.password_hash}\n" for a in accounts)


def render_acl(accounts: Iterable[BrokerAccount]) -> str:
    lines = ["# written by lykta from the device registry; changes are overwritten", ""]
    for a in accounts:
        lines.append(f"user {a.username}")
        if a.role == "ingest":
            lines.append("topic read lykta/#")
        else:
            if a.role == "device":
                base = f"lykta/{a.tenant_id}/{a.device_kind}/{a.device_id}"
            else:
                base = f"lykta/{a.tenant_id}/+/+"
            lines.extend(f"topic write {base}/{channel}" for channel in DEVICE_CHANNELS)
            lines.append(f"topic read {base}/command")
        lines.append("")
    return "\n".join(lines)


def _write_private(path: Path, text: str, owner: Account | None, mode: int = 0o640) -> None:
    """Replace ``path`` atomically with a file only its owner (and the broker's group) can read."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    if owner is not None:
        os.chown(tmp, owner.uid, owner.gid)
    os.replace(tmp, path)


def write_broker_files(conn: psycopg.Connection, directory: Path) -> int:
    """Write the password file and ACL for every account into ``directory``; returns the number of accounts."""
    directory.mkdir(parents=True, exist_ok=True)
    accounts = store.for_broker(conn)
    owner = Account.for_service("mosquitto")
    _write_private(directory / PASSWORD_FILE, render_password_file(accounts), owner)
    _write_private(directory / ACL_FILE, render_acl(accounts), owner)
    return len(accounts)


def write_empty_broker_files(directory: Path) -> None:
    """Files that let nobody in: for a broker started before the database has any account."""
    directory.mkdir(parents=True, exist_ok=True)
    owner = Account.for_service("mosquitto")
    for name, text in ((PASSWORD_FILE, ""), (ACL_FILE, render_acl([]))):
        if not (directory / name).exists():
            _write_private(directory / name, text, owner)


def reload_broker(pid: int) -> bool:
    """SIGHUP makes Mosquitto read its password file and ACL again; False when it is not running."""
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return False
    return True


@dataclass(frozen=True)
class Issued:
    """A secret created now; shown once."""

    username: str
    password: str = field(repr=False)
    tenant_id: str | None
    device_id: str | None


def provision_devices(
    conn: psycopg.Connection, tenant_id: str, device_ids: Sequence[str] | None, *, rotate: bool
) -> tuple[list[Issued], int]:
    """Accounts for the tenant's devices (all, or those named) that have none, or new secrets for all of them
    with ``rotate``. Returns the secrets issued and how many devices already had an account and were left."""
    refs = store.devices(conn, tenant_id, device_ids)
    if device_ids:
        missing = sorted(set(device_ids) - {r.device_id for r in refs})
        if missing:
            raise ProvisionError(
                f"no device {', '.join(missing[:5])} in tenant {tenant_id!r} (or it is retired); import it first"
            )
    elif not refs:
        raise ProvisionError(f"tenant {tenant_id!r} has no devices to provision; import an inventory first")
    issued: list[Issued] = []
    kept = 0
    with conn.transaction():
        for ref in refs:
            if ref.has_account and not rotate:
                kept += 1
                continue
            secret = new_secret()
            username = store.device_username(ref.device_key)
            store.upsert(
                conn, username, "device", hash_password(secret), tenant_id=ref.tenant_id, device_key=ref.device_key
            )
            issued.append(Issued(username, secret, ref.tenant_id, ref.device_id))
    return issued, kept


def provision_gateway(conn: psycopg.Connection, tenant_id: str) -> Issued:
    """A new secret for the tenant's gateway account (created if needed)."""
    try:
        tenants.get(conn, tenant_id)
    except UnknownTenant:
        raise ProvisionError(f"no tenant {tenant_id!r}; add it with lykta tenants add") from None
    secret = new_secret()
    username = store.gateway_username(tenant_id)
    with conn.transaction():
        store.upsert(conn, username, "gateway", hash_password(secret), tenant_id=tenant_id)
    return Issued(username, secret, tenant_id, None)


def provision_ingest(conn: psycopg.Connection) -> Issued:
    """A new secret for the ingest service's account (created if needed)."""
    secret = new_secret()
    with conn.transaction():
        store.upsert(conn, INGEST_USERNAME, "ingest", hash_password(secret))
    return Issued(INGEST_USERNAME, secret, None, None)


def write_secrets(path: Path, issued: Sequence[Issued]) -> None:
    """CSV (tenant, device, username, password), created with mode 0600; never overwrites a file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ProvisionError(f"{path} exists; secrets are never written over an existing file") from None
    with os.fdopen(fd, "w") as fh:
        fh.write("tenant,device,username,password\n")
        for i in issued:
            fh.write(f"{i.tenant_id or ''},{i.device_id or ''},{i.username},{i.password}\n")


def store_ingest_secret(state_dir: Path, issued: Issued) -> Path:
    path = ingest_secret_file(state_dir)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.parent.chmod(0o700)
    _write_private(path, issued.password + "\n", None, mode=0o600)
    return path

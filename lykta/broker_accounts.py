"""Broker accounts: passwords, and the broker's dynamic-security file and live changes from the device registry.

Every device gets its own account (``device-<device key>``) that may publish only
on its own ``telemetry``, ``status`` and ``event`` topics and subscribe only to its
own ``command`` topic, and must connect with its user name as client id. A
municipality's gateway account (``gateway-<tenant>``: a field gateway, or the
simulators) may do the same for all devices of that municipality and nothing else.
The ingest service's account (``lykta-ingest``) may only read ``lykta/#``.
Anonymous clients are refused. Mosquitto's dynamic-security plugin enforces all of
it, subscriptions included (its password file and ACL file do not check
subscriptions, nor who uses which client id).

Passwords are 192-bit random secrets, shown once (written to a file only the
caller can read) and stored as PBKDF2-SHA512 hashes in Mosquitto's own format,
so the broker checks them and the database never holds them. With secrets this
long the hash only has to be one-way, not slow: ``mosquitto_passwd``'s default
of 101 iterations keeps a reconnect storm of ten thousand devices cheap.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from floor.errors import LyktaError
from floor.mqtt_login import INGEST_USERNAME
from lykta import broker_control
from lykta.process import Account
from storage import accounts as store
from storage import tenants
from storage.accounts import BrokerAccount
from storage.errors import UnknownTenant

ITERATIONS = 101
DYNSEC_FILE = "dynamic-security.json"
ADMIN_USERNAME = "lykta-broker-admin"
ADMIN_SECRET = "mqtt-admin"  # noqa: S105 - a file name
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


def dynsec_password(password_hash: str) -> dict[str, Any]:
    """The dynamic-security plugin's form of a ``$7$`` hash: the same PBKDF2-SHA512, in three fields."""
    _, kind, iterations, salt, digest = password_hash.split("$")
    if kind != "7":
        raise LyktaError(f"not a PBKDF2-SHA512 ($7$) password hash: ${kind}$...")
    return {"password": digest, "salt": salt, "iterations": int(iterations)}


def topic_base(account: BrokerAccount) -> str:
    if account.role == "device":
        return f"lykta/{account.tenant_id}/{account.device_kind}/{account.device_id}"
    return f"lykta/{account.tenant_id}/+/+"


def role_acls(account: BrokerAccount) -> list[dict[str, Any]]:
    """What the account may do; everything else is refused (the plugin's defaults below). Ingest reads all
    telemetry; a device publishes on its own topics and reads its own command topic; a gateway the same for
    every device of its municipality."""
    if account.role == "ingest":
        return [
            {"acltype": "subscribePattern", "topic": "lykta/#", "allow": True},
            {"acltype": "publishClientReceive", "topic": "lykta/#", "allow": True},
        ]
    base = topic_base(account)
    subscribe = "subscribeLiteral" if account.role == "device" else "subscribePattern"
    return [
        *({"acltype": "publishClientSend", "topic": f"{base}/{channel}", "allow": True} for channel in DEVICE_CHANNELS),
        {"acltype": subscribe, "topic": f"{base}/command", "allow": True},
        {"acltype": "publishClientReceive", "topic": f"{base}/command", "allow": True},
    ]


def bound_client_id(account: BrokerAccount) -> str | None:
    """Devices and gateways must connect with their user name as client id, so no account can take another's
    client id (and with it its session). Ingest runs several processes under one account and may choose."""
    return None if account.role == "ingest" else account.username


def dynsec_client(account: BrokerAccount, password: str | None = None) -> dict[str, Any]:
    """The plugin's client entry: with the stored hash for its file, or a new plaintext password for a command."""
    client: dict[str, Any] = {"username": account.username, "roles": [{"rolename": account.username}]}
    client.update({"password": password} if password is not None else dynsec_password(account.password_hash))
    if (client_id := bound_client_id(account)) is not None:
        client["clientid"] = client_id
    return client


ADMIN_ROLE = "lykta-broker-admin"
ADMIN_ACLS = [
    {"acltype": acltype, "topic": "$CONTROL/dynamic-security/#", "allow": True}
    for acltype in ("publishClientSend", "publishClientReceive", "subscribePattern")
]
DEFAULT_ACCESS = {"publishClientSend": False, "publishClientReceive": False, "subscribe": False, "unsubscribe": True}


def render_dynsec(accounts: Iterable[BrokerAccount], admin: tuple[str, str] | None) -> dict[str, Any]:
    """The plugin's file: a role per account (named like it), the administrator lykta uses to change accounts
    while the broker runs (when given), and refusal of everything not granted."""
    clients: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    if admin is not None:
        clients.append(
            {"username": admin[0], "roles": [{"rolename": ADMIN_ROLE}], **dynsec_password(hash_password(admin[1]))}
        )
        roles.append({"rolename": ADMIN_ROLE, "acls": ADMIN_ACLS})
    for account in accounts:
        clients.append(dynsec_client(account))
        roles.append({"rolename": account.username, "acls": role_acls(account)})
    return {"clients": clients, "roles": roles, "groups": [], "defaultACLAccess": DEFAULT_ACCESS}


def _write_private(path: Path, text: str, owner: Account | None, mode: int = 0o600) -> None:
    """Replace ``path`` atomically with a file only its owner can read."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    if owner is not None:
        os.chown(tmp, owner.uid, owner.gid)
    os.replace(tmp, path)


def write_broker_file(accounts: Sequence[BrokerAccount], directory: Path, admin: tuple[str, str] | None) -> Path:
    """Write the plugin's file into ``directory`` (owned by the broker's account, which rewrites it on changes)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DYNSEC_FILE
    _write_private(path, json.dumps(render_dynsec(accounts, admin), indent=1), Account.for_service("mosquitto"))
    return path


def admin_login(state_dir: Path, *, create: bool = False) -> tuple[str, str] | None:
    """The local broker's administrator (its password in ``<state>/secrets/mqtt-admin``, made when ``create``)."""
    path = state_dir / "secrets" / ADMIN_SECRET
    if not path.exists():
        if not create:
            return None
        keep_secret(path, new_secret())
    return ADMIN_USERNAME, path.read_text().strip()


def apply_changes(
    host: str,
    port: int,
    admin: tuple[str, str],
    wanted: Sequence[BrokerAccount],
    issued: Sequence[Issued],
    *,
    tls: ssl.SSLContext | None = None,
) -> list[str]:
    """Bring the running broker in line with the registry: accounts issued now are (re)created with their new
    password (which cuts existing connections made with the old one), accounts gone from the registry are
    deleted. Returns what was done; an account the broker lacks whose password was not issued now (so lykta
    only has its hash) is reported: the broker loads it at its next start."""
    by_name = {a.username: a for a in wanted}
    answers = asyncio.run(
        broker_control.run_commands(host, port, admin, [{"command": "listClients", "count": -1}], tls=tls)
    )
    known = set(answers[0].get("data", {}).get("clients", [])) if answers else set()
    commands: list[dict[str, Any]] = []
    removed = sorted(known - set(by_name) - {admin[0]})
    for username in removed:
        commands += [{"command": "deleteClient", "username": username}, {"command": "deleteRole", "rolename": username}]
    fresh = [i for i in issued if i.username in by_name]
    for i in fresh:
        account = by_name[i.username]
        if i.username in known:
            commands += [{"command": "deleteClient", "username": i.username}]
        commands += [
            {"command": "deleteRole", "rolename": i.username},
            {"command": "createRole", "rolename": i.username, "acls": role_acls(account)},
            {"command": "createClient", **dynsec_client(account, i.password)},
        ]
    done = [f"broker: {len(fresh)} account(s) created or renewed, {len(removed)} removed (live)"]
    if commands:
        answers = asyncio.run(broker_control.run_commands(host, port, admin, commands, tls=tls))
        errors = broker_control.failures(answers, tolerated=("Role not found",))
        if errors:
            raise ProvisionError(f"the broker refused {len(errors)} change(s): {'; '.join(errors[:3])}")
    lacking = sorted(set(by_name) - known - {i.username for i in fresh})
    if lacking:
        done.append(
            f"broker: {len(lacking)} account(s) provisioned earlier are not loaded (e.g. {lacking[0]}); "
            "the broker reads them from the registry when lykta services up next starts it"
        )
    return done


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


def keep_secret(path: Path, secret: str) -> Path:
    """Keep a local service's password where the lykta commands on this machine find it: mode 0600, in a
    directory only its owner may enter."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.parent.chmod(0o700)
    _write_private(path, secret + "\n", None, mode=0o600)
    return path

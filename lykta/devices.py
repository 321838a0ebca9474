"""``lykta devices provision``: broker accounts for devices, gateways and ingest, and the broker's files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from floor.mqtt_login import INGEST_USERNAME, local_login
from lykta import broker_accounts
from lykta.broker_accounts import Issued, ProvisionError
from lykta.services import ServiceState
from storage import accounts


@dataclass(frozen=True)
class ProvisionRequest:
    tenant: str | None = None
    devices: tuple[str, ...] = ()
    all_devices: bool = False
    rotate: bool = False
    gateway: bool = False
    ingest: bool = False
    secrets: Path | None = None
    broker_dir: Path | None = None


def provision(database_url: str, state_dir: Path, req: ProvisionRequest) -> list[str]:
    """Create (or with ``rotate`` renew) accounts, write their secrets once, rewrite the broker's password
    file and ACL, and make the local broker read them. Returns what was done, never a secret."""
    wants_devices = bool(req.devices) or req.all_devices
    if (wants_devices or req.gateway) and not req.tenant:
        raise ProvisionError("--tenant is needed for device and gateway accounts")
    local = ServiceState.load(state_dir).mqtt
    broker_dir = req.broker_dir or ((state_dir / "mosquitto").resolve() if local else None)
    if broker_dir is None:
        raise ProvisionError("no local broker here: name the broker's directory with --broker-dir")
    remote_ingest = req.ingest and req.broker_dir is not None
    if (wants_devices or req.gateway or remote_ingest) and req.secrets is None:
        raise ProvisionError("--secrets FILE is needed: new passwords are written there once (mode 0600)")
    if req.secrets is not None and req.secrets.exists():
        raise ProvisionError(f"{req.secrets} exists; secrets are never written over an existing file")
    tenant = req.tenant or ""
    lines: list[str] = []
    issued: list[Issued] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        if wants_devices:
            made, kept = broker_accounts.provision_devices(conn, tenant, req.devices or None, rotate=req.rotate)
            issued += made
            verb = "renewed" if req.rotate else "created"
            lines.append(f"devices: {len(made)} account(s) {verb}, {kept} already had one (use --rotate to renew)")
        if req.gateway:
            issued.append(broker_accounts.provision_gateway(conn, tenant))
            lines.append(f"gateway: account {issued[-1].username} may publish for every device of {tenant}")
        local_ingest = req.broker_dir is None and (
            req.ingest or not local_login(state_dir) or not accounts.exists(conn, INGEST_USERNAME)
        )
        if local_ingest:
            path = broker_accounts.store_ingest_secret(state_dir, broker_accounts.provision_ingest(conn))
            lines.append(f"ingest: account {INGEST_USERNAME}, password in {path} (mode 0600)")
        elif req.ingest:
            issued.append(broker_accounts.provision_ingest(conn))
            lines.append(f"ingest: account {INGEST_USERNAME} (set mqtt_username and mqtt_password)")
        if issued and req.secrets is not None:  # checked above: there is a file whenever secrets are issued
            broker_accounts.write_secrets(req.secrets, issued)
            lines.append(f"secrets: {len(issued)} password(s) in {req.secrets} (mode 0600), shown nowhere else")
        count = broker_accounts.write_broker_files(conn, broker_dir)
    files = f"{broker_dir / broker_accounts.PASSWORD_FILE} and {broker_dir / broker_accounts.ACL_FILE}"
    lines.append(f"broker: {count} account(s) in {files}")
    if req.broker_dir is None and local is not None:
        reloaded = broker_accounts.reload_broker(local.pid)
        lines.append("broker: told to reload them" if reloaded else "broker: not running; it reads them at start")
    return lines

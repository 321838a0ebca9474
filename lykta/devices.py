"""``lykta devices provision``: broker accounts for devices, gateways and ingest, and the broker's files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from floor.mqtt_login import INGEST_USERNAME, client_tls, gateway_secret_file, ingest_secret_file, local_login
from lykta import broker_accounts, mosquitto
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
    ca_file: Path | None = None
    """what verifies the local broker's certificate when it serves TLS"""


def provision(database_url: str, state_dir: Path, req: ProvisionRequest) -> list[str]:
    """Create (or with ``rotate`` renew) accounts, write their secrets once, and bring the broker in line: the
    local broker at once (through its dynamic-security plugin), a broker lykta does not run through the file
    written into ``broker_dir``. Returns what was done, never a secret."""
    wants_devices = bool(req.devices) or req.all_devices
    if (wants_devices or req.gateway) and not req.tenant:
        raise ProvisionError("--tenant is needed for device and gateway accounts")
    local = ServiceState.load(state_dir).mqtt
    if req.broker_dir is None and local is None:
        raise ProvisionError("no local broker here: name the broker's directory with --broker-dir")
    remote_ingest = req.ingest and req.broker_dir is not None
    local_gateway = req.gateway and req.broker_dir is None and req.secrets is None and not wants_devices
    if (wants_devices or (req.gateway and not local_gateway) or remote_ingest) and req.secrets is None:
        raise ProvisionError("--secrets FILE is needed: new passwords are written there once (mode 0600)")
    if req.secrets is not None and req.secrets.exists():
        raise ProvisionError(f"{req.secrets} exists; secrets are never written over an existing file")
    tenant = req.tenant or ""
    lines: list[str] = []
    issued: list[Issued] = []
    to_file: list[Issued] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        if wants_devices:
            made, kept = broker_accounts.provision_devices(conn, tenant, req.devices or None, rotate=req.rotate)
            issued += made
            to_file += made
            verb = "renewed" if req.rotate else "created"
            lines.append(f"devices: {len(made)} account(s) {verb}, {kept} already had one (use --rotate to renew)")
        if req.gateway:
            gateway = broker_accounts.provision_gateway(conn, tenant)
            issued.append(gateway)
            if local_gateway:
                path = broker_accounts.keep_secret(gateway_secret_file(state_dir, tenant), gateway.password)
                lines.append(f"gateway: account {gateway.username} (client id the same), password in {path}")
            else:
                to_file.append(gateway)
                lines.append(f"gateway: account {gateway.username} may publish for every device of {tenant}")
        local_ingest = req.broker_dir is None and (
            req.ingest or not local_login(state_dir) or not accounts.exists(conn, INGEST_USERNAME)
        )
        if local_ingest:
            ingest = broker_accounts.provision_ingest(conn)
            issued.append(ingest)
            path = broker_accounts.keep_secret(ingest_secret_file(state_dir), ingest.password)
            lines.append(f"ingest: account {INGEST_USERNAME}, password in {path} (mode 0600)")
        elif req.ingest:
            ingest = broker_accounts.provision_ingest(conn)
            issued.append(ingest)
            to_file.append(ingest)
            lines.append(f"ingest: account {INGEST_USERNAME} (set mqtt_username and mqtt_password)")
        if to_file and req.secrets is not None:  # checked above: there is a file whenever secrets are issued
            broker_accounts.write_secrets(req.secrets, to_file)
            lines.append(f"secrets: {len(to_file)} password(s) in {req.secrets} (mode 0600), shown nowhere else")
        wanted = accounts.for_broker(conn)
    if req.broker_dir is not None:
        path = broker_accounts.write_broker_file(wanted, req.broker_dir, None)
        lines.append(f"broker: {len(wanted)} account(s) in {path}; start (or restart) Mosquitto with it")
        return lines
    if local is None:  # checked above; for the type checker
        raise ProvisionError("no local broker here: name the broker's directory with --broker-dir")
    admin = broker_accounts.admin_login(state_dir)
    if not mosquitto.running(local) or admin is None or not mosquitto.authenticates(local):
        admin = admin or broker_accounts.admin_login(state_dir, create=True)
        path = broker_accounts.write_broker_file(wanted, (state_dir / "mosquitto").resolve(), admin)
        why = "not running" if not mosquitto.running(local) else "running without accounts (--anonymous)"
        lines.append(f"broker: {why}; it reads the {len(wanted)} account(s) in {path} when started with them")
        return lines
    tls = client_tls(local.url, req.ca_file)
    lines += broker_accounts.apply_changes(local.host, local.port, admin, wanted, issued, tls=tls)
    return lines

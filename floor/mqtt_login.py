"""How a lykta MQTT client logs in: the account it uses and the TLS context that verifies the broker.

The ingest service and the simulators are MQTT clients; both take their account from the settings
(``mqtt_username``/``mqtt_password``), and ingest falls back to the account that ``lykta devices provision``
made for the local services, whose password lies in ``<state>/secrets/mqtt-ingest``.
"""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

from floor.config import Settings
from floor.errors import LyktaError

INGEST_USERNAME = "lykta-ingest"
INGEST_SECRET = "mqtt-ingest"  # noqa: S105 - a file name
"""File under ``<state>/secrets`` holding the local ingest account's password."""


def ingest_secret_file(state_dir: Path) -> Path:
    return state_dir / "secrets" / INGEST_SECRET


def gateway_secret_file(state_dir: Path, tenant_id: str) -> Path:
    """Where ``lykta devices provision --gateway`` without ``--secrets`` keeps a municipality's gateway password
    for the lykta commands of this machine (the simulators)."""
    return state_dir / "secrets" / f"mqtt-gateway-{tenant_id}"


def local_gateway_login(state_dir: Path, tenant_id: str) -> tuple[str, str] | None:
    """The gateway account of a municipality on the local services, when one was provisioned there."""
    with contextlib.suppress(FileNotFoundError):
        return f"gateway-{tenant_id}", gateway_secret_file(state_dir, tenant_id).read_text().strip()
    return None


def local_login(state_dir: Path) -> tuple[str, str] | None:
    """The ingest account of the local services, when ``lykta devices provision`` made one."""
    with contextlib.suppress(FileNotFoundError):
        return INGEST_USERNAME, ingest_secret_file(state_dir).read_text().strip()
    return None


def client_tls(url: str, ca_file: Path | None) -> ssl.SSLContext | None:
    """A verifying TLS context for ``mqtts://`` URLs (the given CA file, else the system's), None for mqtt://."""
    if not url.startswith("mqtts://"):
        return None
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise LyktaError(f"cannot use the CA file {ca_file} for mqtts: {exc}") from None


def client_login(settings: Settings, *, local_ingest: bool, tenant: str | None = None) -> tuple[str, str] | None:
    """The configured account (mqtt_username and mqtt_password), else on the local services the ingest account
    (for ingest) or the municipality's gateway account (for the simulators of ``tenant``) when one was
    provisioned there, else none (anonymous)."""
    if settings.mqtt_username:
        if settings.mqtt_password is None:
            raise LyktaError("mqtt_username is set without mqtt_password")
        return settings.mqtt_username, settings.mqtt_password
    if settings.mqtt_url is None:
        if local_ingest:
            return local_login(settings.state_dir)
        if tenant is not None:
            return local_gateway_login(settings.state_dir, tenant)
    return None

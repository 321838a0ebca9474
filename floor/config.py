"""One configuration object, read once in the entry point and passed down.

Sources, later ones win: built-in defaults, a TOML file (``--config`` or
``LYKTA_CONFIG``), then ``LYKTA_*`` environment variables. Every key of the file
has an environment variable of the same name in upper case with the ``LYKTA_``
prefix. Unknown keys and malformed values fail at start with the name of the
setting.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from floor.errors import ConfigError

ENV_PREFIX = "LYKTA_"


@dataclass(frozen=True)
class Settings:
    """Everything a lykta command can be told from outside."""

    state_dir: Path = Path(".lykta")
    """Where local services keep their data and the connection settings they record."""
    database_url: str | None = None
    """PostgreSQL connection URL; default: the one recorded by ``lykta services up``."""
    mqtt_url: str | None = None
    """MQTT broker as ``mqtt://host:port``; default: the one recorded by ``lykta services up``."""
    mqtt_username: str | None = None
    """Broker account of this process (ingest: lykta-ingest; simulators: a gateway account)."""
    mqtt_password: str | None = field(default=None, repr=False)
    """Its password (never printed)."""
    mqtt_ca_file: Path | None = None
    """CA certificates that verify the broker for mqtts:// URLs; default: the system's."""
    mqtt_security: bool = True
    """lykta services up: refuse anonymous clients; accounts, client ids and topics from lykta devices provision
    (false, or services up --anonymous, lets anyone in)."""
    mqtt_autosave_seconds: int = 10
    """lykta services up: the broker saves its sessions and queued messages this often (a crash loses at most
    this much of what ingest had not yet committed; docs/ingest.md)."""
    mqtt_tls_cert_file: Path | None = None
    """lykta services up: serve MQTT over TLS with this certificate chain (PEM)."""
    mqtt_tls_key_file: Path | None = None
    """lykta services up: the private key of that certificate (PEM)."""
    retention_days: int = 395
    """Days of raw telemetry kept; rollups are kept for good."""
    log_level: str = "INFO"
    """Python logging level name."""
    log_format: str = "text"
    """text or json (one JSON object per line)."""
    ingest_group: str = "lykta"
    """Shared-subscription group that earlier versions of ingest used; its subscription is removed at connect."""
    ingest_partition: str = "1/1"
    """k/N: this process stores the devices whose id hashes to k of N (lykta ingest --workers sets it)."""
    ingest_client_id: str | None = None
    """MQTT client id; stable per process so a restart resumes its session (default: lykta-ingest-<host>)."""
    ingest_batch_messages: int = 2000
    """Flush a batch at this many messages or..."""
    ingest_batch_age_ms: int = 50
    """...when its oldest message is this many milliseconds old."""
    ingest_receive_maximum: int = 10000
    """Unacknowledged messages one ingest process holds: its MQTT v5 Receive Maximum, enforced by pausing reads."""
    ingest_max_buffer_bytes: int = 64 * 1024 * 1024
    """Payload bytes held unacknowledged before ingest stops reading from the broker."""
    ingest_session_expiry_s: int = 7 * 86400
    """How long the broker keeps an absent ingest process's session and queued messages."""
    ingest_unknown_devices: str = "reject"
    """reject (dead-letter as unknown_device) or register (as an unprovisioned device)."""
    ingest_metrics_port: int = 9810
    """Prometheus metrics endpoint on 127.0.0.1; 0 turns it off."""
    ingest_stats_interval_s: int = 10
    """How often ingest writes its counters to the ingest_stats table."""
    ingest_restart_limit: int = 5
    """lykta ingest --workers: restarts of one worker within 5 minutes before the supervisor gives up (exit 1)."""
    max_payload_bytes: int = 262_144
    """Largest telemetry payload accepted (docs/telemetry.md)."""
    max_future_s: int = 300
    """How far ahead of the receive time a device time may be."""
    max_age_days: int = 35
    """How far back a device time may be."""
    cases_policy: str | None = None
    """Maintenance policy files (priorities, SLA, routing), separated by commas; merged over the defaults."""
    smtp_host: str = "127.0.0.1"
    """Mail server for work-order e-mail."""
    smtp_port: int = 25
    """Its port."""
    smtp_from: str = "lykta@localhost"
    """Sender address of work-order e-mail."""
    smtp_starttls: bool = False
    """Upgrade the mail connection with STARTTLS."""
    smtp_user: str | None = None
    """Mail login (with smtp_password)."""
    smtp_password: str | None = field(default=None, repr=False)
    """Mail password (never printed)."""
    outbox_max_attempts: int = 12
    """Delivery attempts of an e-mail or webhook before it is given up (backoff doubles from 30 s to 1 h)."""
    api_host: str = "127.0.0.1"
    """Address ``lykta api`` listens on."""
    api_port: int = 8080
    """Port of ``lykta api``."""
    api_public_url: str | None = None
    """How people reach the API (links in work-order e-mail); default http://api_host:api_port."""
    api_connections: int = 4
    """Database connections of ``lykta api``: as many requests work at once, one connection each."""
    api_queue: int = 256
    """Requests that may wait for a connection; more at once are refused with 503 and Retry-After."""
    api_queue_wait_s: int = 10
    """How long a request waits for a connection before it is refused with 503 and Retry-After."""
    grafana_url: str | None = None
    """Grafana's address: the console links a case to the asset dashboard there."""
    map_tiles: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    """Map tiles of the citizens' report page (a URL template; empty: no tiles, the page works without)."""

    @property
    def services_file(self) -> Path:
        return self.state_dir / "services.json"


def describe_environment() -> str:
    """One line per setting, for ``--help``."""
    return (
        "\n".join(f"  {ENV_PREFIX}{f.name.upper():<20} {_doc(f.name)}" for f in fields(Settings))
        + f"\n  {ENV_PREFIX}CONFIG{'':<20} TOML file with the same keys in lower case"
    )


def _doc(name: str) -> str:
    docs = {
        "state_dir": "state directory of the local services (default .lykta)",
        "database_url": "PostgreSQL URL (default: recorded by `lykta services up`)",
        "mqtt_url": "MQTT broker mqtt://host:port (default: recorded by `lykta services up`)",
        "retention_days": "days of raw telemetry kept (default 395)",
        "log_level": "DEBUG, INFO, WARNING or ERROR (default INFO)",
    }
    if name in docs:
        return docs[name]
    doc = _FIELD_DOCS.get(name, "").rstrip(".")
    return f"{doc} (default {getattr(Settings(), name)})"


def _positive_int(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ConfigError(f"setting {name!r}: expected a whole number, got {raw!r}")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r}: expected a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"setting {name!r}: must be greater than 0, got {value}")
    return value


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def check(name: str, raw: Any) -> str:
        value = str(raw).lower()
        if value not in allowed:
            raise ConfigError(f"setting {name!r}: expected {' or '.join(allowed)}, got {raw!r}")
        return value

    return check


def _port(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ConfigError(f"setting {name!r}: expected a port number, got {raw!r}")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r}: expected a port number, got {raw!r}") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"setting {name!r}: expected 0 to 65535, got {value}")
    return value


def _name(name: str, raw: Any) -> str:
    value = str(raw)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise ConfigError(f"setting {name!r}: use 1-64 letters, digits, '_', '.' or '-', got {raw!r}")
    return value


def _partition(name: str, raw: Any) -> str:
    match = re.fullmatch(r"(\d{1,2})/(\d{1,2})", str(raw).strip())
    if not match or not 1 <= int(match[1]) <= int(match[2]) <= 64:
        raise ConfigError(f"{name}: {raw!r} is not k/N with 1 <= k <= N <= 64 (for example 1/2)")
    return f"{int(match[1])}/{int(match[2])}"


def _log_level(name: str, raw: Any) -> str:
    value = str(raw).upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"setting {name!r}: expected DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return value


def _url(scheme: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(name: str, raw: Any) -> str:
        value = str(raw)
        if not value.startswith(tuple(s + "://" for s in scheme)):
            raise ConfigError(f"setting {name!r}: expected a URL starting with {' or '.join(scheme)}://")
        return value

    return check


def _tiles(name: str, raw: Any) -> str:
    value = str(raw)
    if value and not (value.startswith("https://") and all(k in value for k in ("{z}", "{x}", "{y}"))):
        raise ConfigError(
            f"setting {name!r}: expected an https:// URL template with {{z}}, {{x}} and {{y}}, or nothing"
        )
    return value


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"setting {name!r}: expected true or false, got {raw!r}")


def _file(name: str, raw: Any) -> Path:
    path = Path(str(raw))
    if not path.is_file():
        raise ConfigError(f"setting {name!r}: {path} is not a readable file")
    return path


def _email(name: str, raw: Any) -> str:
    value = str(raw)
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", value):
        raise ConfigError(f"setting {name!r}: expected an e-mail address, got {raw!r}")
    return value


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "state_dir": lambda _n, raw: Path(str(raw)),
    "database_url": _url(("postgresql", "postgres")),
    "mqtt_url": _url(("mqtt", "mqtts")),
    "mqtt_username": _name,
    "mqtt_password": lambda _n, raw: str(raw),
    "mqtt_ca_file": _file,
    "mqtt_security": _bool,
    "mqtt_autosave_seconds": _positive_int,
    "mqtt_tls_cert_file": _file,
    "mqtt_tls_key_file": _file,
    "retention_days": _positive_int,
    "log_level": _log_level,
    "log_format": _choice("text", "json"),
    "ingest_group": _name,
    "ingest_partition": _partition,
    "ingest_client_id": _name,
    "ingest_batch_messages": _positive_int,
    "ingest_batch_age_ms": _positive_int,
    "ingest_receive_maximum": _positive_int,
    "ingest_max_buffer_bytes": _positive_int,
    "ingest_session_expiry_s": _positive_int,
    "ingest_unknown_devices": _choice("reject", "register"),
    "ingest_metrics_port": _port,
    "ingest_stats_interval_s": _positive_int,
    "ingest_restart_limit": _positive_int,
    "max_payload_bytes": _positive_int,
    "max_future_s": _positive_int,
    "max_age_days": _positive_int,
    "cases_policy": lambda _n, raw: str(raw),
    "smtp_host": lambda _n, raw: str(raw),
    "smtp_port": _port,
    "smtp_from": _email,
    "smtp_starttls": _bool,
    "smtp_user": lambda _n, raw: str(raw),
    "smtp_password": lambda _n, raw: str(raw),
    "outbox_max_attempts": _positive_int,
    "api_host": lambda _n, raw: str(raw),
    "api_port": _port,
    "api_public_url": _url(("http", "https")),
    "api_connections": _positive_int,
    "api_queue": _positive_int,
    "api_queue_wait_s": _positive_int,
    "grafana_url": _url(("http", "https")),
    "map_tiles": _tiles,
}


def _field_docs() -> dict[str, str]:
    """The attribute docstrings of Settings, read from this module's source."""
    tree = ast.parse(inspect.getsource(Settings))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = nxt.value.value
    return docs


_FIELD_DOCS = _field_docs()


def load(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings; raise ConfigError naming the first bad setting."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
        for key, value in data.items():
            if key not in _PARSERS:
                raise ConfigError(f"configuration file {path}: unknown setting {key!r}")
            raw[key] = value
    for key in _PARSERS:
        env_value = env.get(ENV_PREFIX + key.upper())
        if env_value not in (None, ""):
            raw[key] = env_value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(raw) - set(_PARSERS)
    if unknown:
        raise ConfigError(f"unknown setting {sorted(unknown)[0]!r}")
    return Settings(**{key: _PARSERS[key](key, value) for key, value in raw.items()})

"""One configuration object, read once in the entry point and passed down.

Sources, later ones win: built-in defaults, a TOML file (``--config`` or
``LYKTA_CONFIG``), then ``LYKTA_*`` environment variables. Every key of the file
has an environment variable of the same name in upper case with the ``LYKTA_``
prefix. Unknown keys and malformed values fail at start with the name of the
setting.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lykta.errors import ConfigError

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
    retention_days: int = 395
    """Days of raw telemetry kept; rollups are kept for good."""
    log_level: str = "INFO"
    """Python logging level name."""

    @property
    def services_file(self) -> Path:
        return self.state_dir / "services.json"


def describe_environment() -> str:
    """One line per setting, for ``--help``."""
    return (
        "\n".join(f"  {ENV_PREFIX}{f.name.upper():<20} {_doc(f.name)}" for f in fields(Settings))
        + f"\n  {ENV_PREFIX}CONFIG{'':<14} TOML file with the same keys in lower case"
    )


def _doc(name: str) -> str:
    docs = {
        "state_dir": "state directory of the local services (default .lykta)",
        "database_url": "PostgreSQL URL (default: recorded by `lykta services up`)",
        "mqtt_url": "MQTT broker mqtt://host:port (default: recorded by `lykta services up`)",
        "retention_days": "days of raw telemetry kept (default 395)",
        "log_level": "DEBUG, INFO, WARNING or ERROR (default INFO)",
    }
    return docs[name]


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


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "state_dir": lambda _n, raw: Path(str(raw)),
    "database_url": _url(("postgresql", "postgres")),
    "mqtt_url": _url(("mqtt", "mqtts")),
    "retention_days": _positive_int,
    "log_level": _log_level,
}


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

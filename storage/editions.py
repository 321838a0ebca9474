"""Which TimescaleDB edition the server has, and which storage path lykta uses with it.

* ``tsl`` (Community license, ``timescaledb.license = 'timescale'``): compression,
  continuous aggregates for the hourly and daily rollups, a retention policy; all
  run by TimescaleDB's background jobs.
* ``apache`` (Apache-2.0 edition, as packaged by Debian): hypertables only; lykta
  maintains the rollups incrementally and drops old chunks itself
  (``lykta db maintain``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psycopg

from storage.errors import TimescaleMissing

StoragePath = Literal["tsl", "apache"]


@dataclass(frozen=True)
class Edition:
    postgres_version: str
    timescaledb_version: str | None
    """Version of the extension in this database; None before the first migration."""
    timescaledb_library: str | None
    """Version of the loaded library (``timescaledb.loader`` aside)."""
    license: str

    @property
    def path(self) -> StoragePath:
        return "tsl" if self.license == "timescale" else "apache"

    @property
    def name(self) -> str:
        return "Community (TSL)" if self.path == "tsl" else "Apache-2.0"


def detect(conn: psycopg.Connection) -> Edition:
    row = conn.execute(
        """
        SELECT current_setting('server_version'),
               (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),
               (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'),
               current_setting('timescaledb.license', true)
        """
    ).fetchone()
    if row is None:
        raise TimescaleMissing("the server did not report its settings")
    pg_version, ext_version, available, license_ = row
    if available is None:
        raise TimescaleMissing("TimescaleDB is not installed on this PostgreSQL server; run ./bootstrap setup")
    if ext_version is None:
        raise TimescaleMissing("the timescaledb extension is not created in this database yet; run lykta db migrate")
    if license_ is None:
        raise TimescaleMissing(
            "TimescaleDB is installed but not loaded: add timescaledb to shared_preload_libraries "
            "(lykta services up does this for its own cluster)"
        )
    return Edition(
        postgres_version=str(pg_version),
        timescaledb_version=ext_version,
        timescaledb_library=available,
        license=str(license_),
    )

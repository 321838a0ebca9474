"""Ordered plain-SQL migrations (``storage/migrations/NNNN_name[.tsl|.apache].sql``).

A migration is one file, or one file per storage path (``.tsl.sql`` and
``.apache.sql``) when the TimescaleDB edition decides what to create. Each runs in
its own transaction and is recorded in ``lykta_migrations`` with the variant and
a checksum; applying is idempotent, refuses a database newer than the code, and
refuses a recorded migration whose file has changed. The storage path chosen the
first time is kept in ``storage_settings`` so that later migrations follow it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from storage.editions import StoragePath, detect
from storage.errors import MigrationError, SchemaTooNew, TimescaleMissing

_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+?)(?:\.(?P<variant>tsl|apache))?\.sql$")
_LOCK_ID = 0x6C796B7461  # "lykta"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    files: dict[str | None, Path] = field(compare=False)
    """Keyed by variant: None for a common migration, else "tsl" and "apache"."""

    def variant_for(self, path: StoragePath) -> str | None:
        return None if None in self.files else path

    def sql(self, variant: str | None) -> str:
        return self.files[variant].read_text(encoding="utf-8")

    def checksum(self, variant: str | None) -> str:
        return hashlib.sha256(self.files[variant].read_bytes()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    variant: str | None
    checksum: str

    @classmethod
    def from_row(cls, row: tuple[int, str, str | None, str]) -> Applied:
        return cls(version=row[0], name=row[1], variant=row[2], checksum=row[3])


def discover(directory: Path | None = None) -> list[Migration]:
    base = directory or Path(__file__).resolve().parent / "migrations"
    found: dict[int, tuple[str, dict[str | None, Path]]] = {}
    for path in sorted(base.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name} does not follow NNNN_name[.tsl|.apache].sql")
        version, name = int(match["version"]), match["name"]
        seen_name, files = found.setdefault(version, (name, {}))
        if seen_name != name:
            raise MigrationError(f"migration version {version:04d} has two names: {seen_name} and {name}")
        files[match["variant"]] = path
    migrations = []
    for version, (name, files) in sorted(found.items()):
        if None in files and len(files) > 1:
            raise MigrationError(f"migration {version:04d}_{name} has both a common file and variants")
        if None not in files and set(files) != {"tsl", "apache"}:
            raise MigrationError(f"migration {version:04d}_{name} needs both .tsl.sql and .apache.sql")
        migrations.append(Migration(version=version, name=name, files=files))
    expected = list(range(1, len(migrations) + 1))
    if [m.version for m in migrations] != expected:
        raise MigrationError(f"migration versions must be 1..{len(migrations)} without gaps")
    return migrations


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS lykta_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    variant    text,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def applied(conn: psycopg.Connection) -> list[Applied]:
    exists = conn.execute("SELECT to_regclass('lykta_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute("SELECT version, name, variant, checksum FROM lykta_migrations ORDER BY version")
    return [Applied.from_row(row) for row in rows.fetchall()]


def recorded_path(conn: psycopg.Connection) -> StoragePath | None:
    exists = conn.execute("SELECT to_regclass('storage_settings') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute("SELECT value FROM storage_settings WHERE key = 'storage_path'").fetchone()
    if row is None:
        return None
    value = str(row[0])
    if value not in ("tsl", "apache"):
        raise MigrationError(f"storage_settings.storage_path holds {value!r}, expected 'tsl' or 'apache'")
    return "tsl" if value == "tsl" else "apache"


@dataclass(frozen=True)
class MigrationReport:
    path: StoragePath
    applied_now: list[str]
    already: int
    schema_version: int


def migrate(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> MigrationReport:
    """Apply the pending migrations; the connection must be in autocommit mode."""
    if not conn.autocommit:
        raise MigrationError("migrate() needs a connection in autocommit mode")
    todo = discover() if migrations is None else migrations
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
    try:
        conn.execute(_CREATE_TABLE)
        done = {a.version: a for a in applied(conn)}
        known = {m.version: m for m in todo}
        newest_db, newest_code = max(done, default=0), max(known, default=0)
        if newest_db > newest_code:
            raise SchemaTooNew(
                f"the database schema is at version {newest_db}, but this lykta knows migrations up to "
                f"{newest_code}; upgrade lykta before running it against this database"
            )
        for version, record in done.items():
            migration = known[version]
            if record.variant not in migration.files:
                raise MigrationError(
                    f"migration {migration.label} was applied as variant {record.variant!r}, which no longer exists"
                )
            if migration.checksum(record.variant) != record.checksum:
                raise MigrationError(
                    f"migration {migration.label} ({migration.files[record.variant].name}) changed after it was "
                    "applied; write a new migration instead of editing an applied one"
                )
        _create_extension(conn)
        path = recorded_path(conn) or detect(conn).path
        applied_now = []
        for migration in todo:
            if migration.version in done:
                continue
            variant = migration.variant_for(path)
            with conn.transaction():
                try:
                    conn.execute(migration.sql(variant).encode())
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {migration.files[variant].name} failed: {str(exc).strip()}"
                    ) from exc
                conn.execute(
                    "INSERT INTO lykta_migrations (version, name, variant, checksum) VALUES (%s, %s, %s, %s)",
                    (migration.version, migration.name, variant, migration.checksum(variant)),
                )
                conn.execute(
                    "INSERT INTO storage_settings (key, value) VALUES ('storage_path', %s) "
                    "ON CONFLICT (key) DO NOTHING",
                    (path,),
                )
            applied_now.append(migration.files[variant].name)
        return MigrationReport(
            path=path,
            applied_now=applied_now,
            already=len(done),
            schema_version=max(newest_db, *(m.version for m in todo), 0),
        )
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))


def _create_extension(conn: psycopg.Connection) -> None:
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        raise TimescaleMissing(f"cannot create the timescaledb extension: {str(exc).strip()}") from exc

"""Migrations against the real PostgreSQL + TimescaleDB: declared schema, idempotence, refusals."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import psycopg
import pytest

from storage import catalog, migrations
from storage.errors import MigrationError, SchemaTooNew

MIGRATIONS = Path(migrations.__file__).resolve().parent / "migrations"
NEXT = len(migrations.discover()) + 1


def _diff(actual: str, expected: str) -> str:
    return "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "declared", "migrated"))


def test_migrations_from_empty_match_the_declared_schema(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        report = migrations.migrate(conn)
        assert report.path == "apache"
        assert report.applied_now == [m.files[m.variant_for("apache")].name for m in migrations.discover()]
        assert report.applied_now[:2] == ["0001_core.sql", "0002_rollups.apache.sql"]
        actual = catalog.describe(conn)
    expected = catalog.declared("apache")
    assert actual == expected, "schema differs from storage/schema/apache.txt:\n" + _diff(actual, expected)


def test_migrating_twice_changes_nothing(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        migrations.migrate(conn)
        first = catalog.describe(conn)
        again = migrations.migrate(conn)
        assert again.applied_now == []
        assert again.already == len(migrations.discover())
        assert catalog.describe(conn) == first
        rows = conn.execute("SELECT version, variant FROM lykta_migrations ORDER BY version").fetchall()
    assert rows == [(m.version, m.variant_for("apache")) for m in migrations.discover()]
    assert rows[1] == (2, "apache")


def test_refuses_a_schema_newer_than_the_code(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO lykta_migrations (version, name, checksum) VALUES (99, 'from_the_future', 'x')")
        with pytest.raises(SchemaTooNew, match="schema is at version 99"):
            migrations.migrate(conn)


def test_refuses_an_applied_migration_that_changed(db_url: str, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy)
    with (copy / "0001_core.sql").open("a") as fh:
        fh.write("\n-- edited after release\n")
    with (
        psycopg.connect(db_url, autocommit=True) as conn,
        pytest.raises(MigrationError, match=r"0001_core.*changed"),
    ):
        migrations.migrate(conn, migrations.discover(copy))


def test_a_failing_migration_leaves_nothing_behind(db_url: str, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy)
    (copy / f"{NEXT:04d}_broken.sql").write_text(
        "CREATE TABLE half_done (x int);\nINSERT INTO half_done VALUES (1);\nSELECT no_such_function();\n"
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(MigrationError, match=rf"{NEXT:04d}_broken\.sql failed"):
            migrations.migrate(conn, migrations.discover(copy))
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        assert conn.execute("SELECT max(version) FROM lykta_migrations").fetchone() == (NEXT - 1,)


def test_a_new_migration_applies_once_in_order(db_url: str, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy)
    (copy / f"{NEXT:04d}_notes.sql").write_text("CREATE TABLE notes (id int PRIMARY KEY);")
    with psycopg.connect(db_url, autocommit=True) as conn:
        report = migrations.migrate(conn, migrations.discover(copy))
        assert report.applied_now == [f"{NEXT:04d}_notes.sql"]
        assert report.schema_version == NEXT
        assert migrations.migrate(conn, migrations.discover(copy)).applied_now == []
        # The released code, which knows only two migrations, now refuses this database.
        with pytest.raises(SchemaTooNew):
            migrations.migrate(conn)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["0001_a.sql", "0003_b.sql"], "without gaps"),
        (["0001_a.sql", "0002_b.tsl.sql"], "needs both"),
        (["0001_a.sql", "0001_a.tsl.sql", "0001_a.apache.sql"], "both a common file and variants"),
        (["0001_a.sql", "0002-b.sql"], "does not follow"),
        (["0001_a.sql", "0001_b.sql"], "two names"),
    ],
)
def test_discover_rejects_badly_named_sets(tmp_path: Path, files: list[str], message: str) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        migrations.discover(tmp_path)


def test_the_shipped_migrations_are_well_formed() -> None:
    found = migrations.discover()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert all(m.files for m in found)

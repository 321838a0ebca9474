"""docs/telemetry.md and the database describe the same metric catalogue and device kinds."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

DOC = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"


def _table(heading: str) -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_documented_metrics_are_the_catalogue(conn: psycopg.Connection) -> None:
    documented = {
        row[0]: (row[1], row[2] or None, row[3], float(row[4]), float(row[5]), row[6])
        for row in _table("Metric catalogue")
    }
    stored = {
        r[0]: (r[1], r[2], r[3], r[4], r[5], r[6])
        for r in conn.execute(
            "SELECT name, unit, senml_unit, kind, min_value, max_value, description FROM metrics"
        ).fetchall()
    }
    assert documented == stored


def test_documented_device_kinds_are_the_registry(conn: psycopg.Connection) -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("Device kinds and the assets they read:", 1)[1].split("\n\n", 2)[1]
    documented = {
        (cells[0].strip("` "), cells[1].strip("` "))
        for cells in (line.strip("|").split("|") for line in section.splitlines()[2:])
    }
    stored = set(conn.execute("SELECT device_kind, kind FROM asset_kinds WHERE device_kind IS NOT NULL").fetchall())
    assert documented == stored
    check = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'devices_device_kind_check'"
    ).fetchone()
    assert check is not None
    assert set(re.findall(r"'(\w+)'", check[0])) == {kind for kind, _ in documented}

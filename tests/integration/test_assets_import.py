"""Importing inventories into the real database: all or nothing, updates not duplicates."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from floor import inventory
from floor.errors import InventoryError
from lykta import admin
from storage import assets, tenants
from storage.errors import UnknownTenant

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _counts(conn: psycopg.Connection) -> tuple[int, int]:
    row = conn.execute("SELECT (SELECT count(*) FROM assets), (SELECT count(*) FROM devices)").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.fixture
def town(conn: psycopg.Connection) -> psycopg.Connection:
    tenants.upsert(conn, "solvik", "Solvik kommun", "sv", "Europe/Stockholm")
    return conn


def test_sample_inventory_imports_and_reimports_without_duplicates(town: psycopg.Connection, db_url: str) -> None:
    first = admin.import_assets(db_url, "solvik", EXAMPLES / "solvik.geojson")
    total = len(inventory.parse_file(EXAMPLES / "solvik.geojson"))
    assert f"{total} new, 0 updated, 0 unchanged" in first
    counts = _counts(town)
    again = admin.import_assets(db_url, "solvik", EXAMPLES / "solvik.geojson")
    assert f"0 new, 0 updated, {total} unchanged" in again
    assert _counts(town) == counts
    tree = town.execute(
        """SELECT c.kind, k.kind, l.kind FROM assets l
           JOIN assets k ON k.tenant_id = l.tenant_id AND k.asset_id = l.parent_id
           JOIN assets c ON c.tenant_id = k.tenant_id AND c.asset_id = k.parent_id
           WHERE l.kind = 'streetlight' GROUP BY 1, 2, 3"""
    ).fetchall()
    assert tree == [("cabinet", "circuit", "streetlight")]


def test_reimport_updates_changed_assets(town: psycopg.Connection, tmp_path: Path) -> None:
    base = "asset_id,kind,parent_id,lat,lon,rated_power_w,lamp_type,device_id\n"
    rows = "C1,cabinet,,56.0,12.7,,,M1\nK1,circuit,C1,,,,,\nL1,streetlight,K1,56.001,12.7,70,HPS 70 W,D1\n"
    assets.import_records(town, "solvik", inventory.parse_csv(base + rows), "v1")
    relamped = rows.replace("70,HPS 70 W", "36,LED 36 W")
    report = assets.import_records(town, "solvik", inventory.parse_csv(base + relamped), "v2")
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 2)
    lamp = town.execute("SELECT rated_power_w, lamp_type FROM assets WHERE asset_id = 'L1'").fetchone()
    assert lamp == (36.0, "LED 36 W")
    assert _counts(town) == (3, 2)


def test_a_bad_row_at_the_end_imports_nothing(town: psycopg.Connection, tmp_path: Path) -> None:
    lines = (EXAMPLES / "solvik.csv").read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*lines, "SL-9999,streetlight,NO-SUCH-CIRCUIT,,,,,,,,,,,,,"]) + "\n")
    with pytest.raises(InventoryError) as exc:
        assets.import_records(town, "solvik", inventory.parse_file(bad), str(bad))
    assert exc.value.problems[0].startswith(f"line {len(lines) + 1}, field 'parent_id': no asset 'NO-SUCH-CIRCUIT'")
    assert _counts(town) == (0, 0)


def test_tree_and_device_rules_are_checked_against_stored_assets(town: psycopg.Connection) -> None:
    assets.import_records(
        town,
        "solvik",
        inventory.parse_csv(
            "asset_id,kind,parent_id,lat,lon,rated_power_w,device_id\n"
            "C1,cabinet,,56.0,12.7,,M1\nK1,circuit,C1,,,,\nL1,streetlight,K1,56.0,12.7,50,D1\n"
        ),
        "base",
    )
    before = _counts(town)
    text = (
        "asset_id,kind,parent_id,lat,lon,rated_power_w,device_id,device_kind\n"
        "L2,streetlight,C9,56.0,12.7,50,,\n"  # line 2: unknown parent
        "L3,streetlight,L1,56.0,12.7,50,,\n"  # line 3: a lamp under a lamp
        "K2,circuit,C1,,,,X1,\n"  # line 4: circuits have no device
        "L4,streetlight,K1,56.0,12.7,50,D1,\n"  # line 5: D1 belongs to L1
        "L5,streetlight,K1,56.0,12.7,,,\n"  # line 6: no rated power
        "W1,waste_bin,,56.0,12.7,,B1,cabinet_meter\n"  # line 7: wrong device kind
        "P1,pumping,,56.0,12.7,,,\n"  # line 8: unknown kind
        "A1,cabinet,A2,56.0,12.7,,,\nA2,cabinet,A1,56.0,12.7,,,\n"  # lines 9-10: cabinets have no parent, loop
        "L1,streetlight,K1,56.0,12.7,50,D7,\n"  # line 11: L1 already has D1
    )
    with pytest.raises(InventoryError) as exc:
        assets.import_records(town, "solvik", inventory.parse_csv(text), "bad.csv")
    problems = "\n".join(exc.value.problems)
    for expected in [
        "line 2, field 'parent_id': no asset 'C9'",
        "line 3, field 'parent_id': a streetlight cannot hang under 'L1', a streetlight",
        "line 4, field 'device_id': a circuit has no device",
        "line 5, field 'device_id': 'D1' is bound to asset 'L1'",
        "line 6, field 'rated_power_w': a streetlight needs its rated power",
        "line 7, field 'device_kind': a waste_bin is read by a bin_fill_sensor, not a cabinet_meter",
        "line 8, field 'kind': unknown asset kind 'pumping'",
        "line 9, field 'parent_id': a cabinet cannot hang under 'A2'",
        "line 9, field 'parent_id': the tree loops: A1 -> A2 -> A1",
        "line 11, field 'device_id': asset 'L1' already has device 'D1'",
    ]:
        assert expected in problems
    assert _counts(town) == before


def test_duplicate_ids_within_a_file(town: psycopg.Connection) -> None:
    text = "asset_id,kind,lat,lon,device_id\nC1,cabinet,56,12,M1\nC1,cabinet,56,12,M2\nC2,cabinet,56,12,M1\n"
    with pytest.raises(InventoryError) as exc:
        assets.import_records(town, "solvik", inventory.parse_csv(text), "dup.csv")
    assert exc.value.problems == [
        "line 3, field 'asset_id': 'C1' appears again (first at line 2)",
        "line 4, field 'device_id': 'M1' is already bound to 'C1' at line 2",
    ]
    assert _counts(town) == (0, 0)


def test_unknown_tenant(conn: psycopg.Connection) -> None:
    records = inventory.parse_csv("asset_id,kind,lat,lon\nC1,cabinet,56,12\n")
    with pytest.raises(UnknownTenant, match="lykta tenants add nowhere"):
        assets.import_records(conn, "nowhere", records, "x.csv")


def test_tenants_of_one_installation_keep_separate_trees(town: psycopg.Connection) -> None:
    tenants.upsert(town, "norrby", "Norrby kommun")
    text = "asset_id,kind,lat,lon,device_id\nC1,cabinet,56,12,M1\n"
    assets.import_records(town, "solvik", inventory.parse_csv(text), "a.csv")
    assets.import_records(town, "norrby", inventory.parse_csv(text), "b.csv")
    rows = town.execute("SELECT tenant_id, asset_id FROM assets ORDER BY tenant_id").fetchall()
    assert rows == [("norrby", "C1"), ("solvik", "C1")]


@pytest.mark.parametrize(
    ("tenant_id", "name", "language", "timezone", "message"),
    [
        ("Solvik!", "x", "en", "UTC", "tenant id 'Solvik!'"),
        ("ok", " ", "en", "UTC", "name must not be empty"),
        ("ok", "x", "de", "UTC", "language 'de'"),
        ("ok", "x", "en", "Mars/Olympus", "timezone 'Mars/Olympus'"),
    ],
)
def test_bad_tenants_are_refused(  # noqa: PLR0917 - one argument per parameter column
    conn: psycopg.Connection, tenant_id: str, name: str, language: str, timezone: str, message: str
) -> None:
    from storage.errors import StorageError

    with pytest.raises(StorageError, match=message):
        tenants.upsert(conn, tenant_id, name, language, timezone)
    assert conn.execute("SELECT count(*) FROM tenants").fetchone() == (0,)

"""The asset tree and the devices bound to it: validated against what is stored, written all or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from floor.errors import InventoryError
from floor.inventory import AssetRecord
from storage.tenants import get as get_tenant


@dataclass(frozen=True)
class AssetKind:
    kind: str
    parent_kinds: tuple[str, ...]
    device_kind: str | None

    @classmethod
    def from_row(cls, row: tuple[str, list[str], str | None]) -> AssetKind:
        return cls(kind=row[0], parent_kinds=tuple(row[1]), device_kind=row[2])


@dataclass(frozen=True)
class ImportReport:
    tenant_id: str
    inserted: int
    updated: int
    unchanged: int
    devices: int


def asset_kinds(conn: psycopg.Connection) -> dict[str, AssetKind]:
    rows = conn.execute("SELECT kind, parent_kinds, device_kind FROM asset_kinds").fetchall()
    return {r[0]: AssetKind.from_row(r) for r in rows}


def check(
    records: Sequence[AssetRecord],
    kinds: dict[str, AssetKind],
    stored: dict[str, tuple[str, str | None]],
    device_owner: dict[str, str],
    asset_device: dict[str, str],
) -> list[str]:
    """Problems of the records as a whole, against the stored tree.

    ``stored`` maps asset id to (kind, parent id); ``device_owner`` maps a stored
    device id to its asset; ``asset_device`` maps a stored asset to its device.
    """
    problems: list[str] = []
    seen: dict[str, AssetRecord] = {}
    devices: dict[str, AssetRecord] = {}
    for r in records:
        if r.asset_id in seen:
            problems.append(
                f"{r.where}, field 'asset_id': {r.asset_id!r} appears again (first at {seen[r.asset_id].where})"
            )
            continue
        seen[r.asset_id] = r
    tree = {a: (k, p) for a, (k, p) in stored.items()}
    tree.update({r.asset_id: (r.kind, r.parent_id) for r in seen.values()})
    for r in seen.values():
        kind = kinds.get(r.kind)
        if kind is None:
            problems.append(
                f"{r.where}, field 'kind': unknown asset kind {r.kind!r}; expected one of {', '.join(sorted(kinds))}"
            )
            continue
        if r.parent_id is not None:
            parent = tree.get(r.parent_id)
            if parent is None:
                problems.append(f"{r.where}, field 'parent_id': no asset {r.parent_id!r} in the file or the inventory")
            elif parent[0] not in kind.parent_kinds:
                allowed = ", ".join(kind.parent_kinds) or "no parent"
                problems.append(
                    f"{r.where}, field 'parent_id': a {r.kind} cannot hang under {r.parent_id!r}, a "
                    f"{parent[0]} (allowed: {allowed})"
                )
        if r.lat is None and r.kind != "circuit":
            problems.append(f"{r.where}, field 'lat': a {r.kind} needs a location (lat and lon or a Point)")
        if r.rated_power_w is None and r.kind == "streetlight":
            problems.append(f"{r.where}, field 'rated_power_w': a streetlight needs its rated power in W")
        device_kind = r.device_kind or kind.device_kind
        if r.device_id is not None:
            if kind.device_kind is None:
                problems.append(f"{r.where}, field 'device_id': a {r.kind} has no device")
            elif device_kind != kind.device_kind:
                problems.append(
                    f"{r.where}, field 'device_kind': a {r.kind} is read by a {kind.device_kind}, not a {device_kind}"
                )
            if r.device_id in devices:
                problems.append(
                    f"{r.where}, field 'device_id': {r.device_id!r} is already bound to "
                    f"{devices[r.device_id].asset_id!r} at {devices[r.device_id].where}"
                )
            owner = device_owner.get(r.device_id)
            if owner is not None and owner != r.asset_id:
                problems.append(
                    f"{r.where}, field 'device_id': {r.device_id!r} is bound to asset {owner!r} in the inventory"
                )
            current = asset_device.get(r.asset_id)
            if current is not None and current != r.device_id:
                problems.append(
                    f"{r.where}, field 'device_id': asset {r.asset_id!r} already has device "
                    f"{current!r}; retire it first"
                )
            devices[r.device_id] = r
        elif r.device_kind is not None:
            problems.append(f"{r.where}, field 'device_kind': given without a device_id")
    for r in seen.values():
        problems.extend(_cycle(r, tree))
    return problems


def _cycle(record: AssetRecord, tree: dict[str, tuple[str, str | None]]) -> list[str]:
    path = [record.asset_id]
    current = record.parent_id
    while current is not None:
        if current == record.asset_id:
            return [f"{record.where}, field 'parent_id': the tree loops: {' -> '.join([*path, current])}"]
        if current in path or len(path) > 64:
            return []
        path.append(current)
        current = tree.get(current, ("", None))[1]
    return []


_UPSERT_ASSET = """
INSERT INTO assets AS a (tenant_id, asset_id, kind, parent_id, name, district, maintenance_area, lat, lon,
                         rated_power_w, lamp_type, install_date, criticality, properties)
VALUES (%(tenant_id)s, %(asset_id)s, %(kind)s, %(parent_id)s, %(name)s, %(district)s, %(maintenance_area)s,
        %(lat)s, %(lon)s, %(rated_power_w)s, %(lamp_type)s, %(install_date)s, %(criticality)s, %(properties)s)
ON CONFLICT (tenant_id, asset_id) DO UPDATE SET
    kind = EXCLUDED.kind, parent_id = EXCLUDED.parent_id, name = EXCLUDED.name, district = EXCLUDED.district,
    maintenance_area = EXCLUDED.maintenance_area, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
    rated_power_w = EXCLUDED.rated_power_w, lamp_type = EXCLUDED.lamp_type, install_date = EXCLUDED.install_date,
    criticality = EXCLUDED.criticality, properties = EXCLUDED.properties, updated_at = now()
WHERE (a.kind, a.parent_id, a.name, a.district, a.maintenance_area, a.lat, a.lon, a.rated_power_w, a.lamp_type,
       a.install_date, a.criticality, a.properties)
      IS DISTINCT FROM
      (EXCLUDED.kind, EXCLUDED.parent_id, EXCLUDED.name, EXCLUDED.district, EXCLUDED.maintenance_area,
       EXCLUDED.lat, EXCLUDED.lon, EXCLUDED.rated_power_w, EXCLUDED.lamp_type, EXCLUDED.install_date,
       EXCLUDED.criticality, EXCLUDED.properties)
RETURNING (xmax = 0) AS inserted
"""

_UPSERT_DEVICE = """
INSERT INTO devices AS d (tenant_id, device_id, device_kind, asset_id, status, reporting_interval_s)
VALUES (%(tenant_id)s, %(device_id)s, %(device_kind)s, %(asset_id)s, 'provisioned',
        coalesce(%(reporting_interval_s)s, 600))
ON CONFLICT (tenant_id, device_id) DO UPDATE SET
    device_kind = EXCLUDED.device_kind, asset_id = EXCLUDED.asset_id, status = 'provisioned',
    reporting_interval_s = coalesce(%(reporting_interval_s)s, d.reporting_interval_s)
"""


def import_records(
    conn: psycopg.Connection, tenant_id: str, records: Sequence[AssetRecord], source: str
) -> ImportReport:
    """Check the records against the stored tree and write them in one transaction, or raise InventoryError."""
    with conn.transaction():
        get_tenant(conn, tenant_id)
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('lykta-assets:' || %s))", (tenant_id,))
        kinds = asset_kinds(conn)
        stored = {
            r[0]: (r[1], r[2])
            for r in conn.execute("SELECT asset_id, kind, parent_id FROM assets WHERE tenant_id = %s", (tenant_id,))
        }
        device_rows = conn.execute(
            "SELECT device_id, asset_id FROM devices WHERE tenant_id = %s AND asset_id IS NOT NULL "
            "AND status <> 'retired'",
            (tenant_id,),
        ).fetchall()
        device_owner: dict[str, str] = dict(device_rows)
        asset_device = {a: d for d, a in device_rows}
        problems = check(records, kinds, stored, device_owner, asset_device)
        if problems:
            raise InventoryError(source, problems)
        inserted = updated = devices = 0
        with conn.cursor() as cur:
            for r in records:
                cur.execute(
                    _UPSERT_ASSET,
                    {
                        "tenant_id": tenant_id,
                        "asset_id": r.asset_id,
                        "kind": r.kind,
                        "parent_id": r.parent_id,
                        "name": r.name,
                        "district": r.district,
                        "maintenance_area": r.maintenance_area,
                        "lat": r.lat,
                        "lon": r.lon,
                        "rated_power_w": r.rated_power_w,
                        "lamp_type": r.lamp_type,
                        "install_date": r.install_date,
                        "criticality": r.criticality,
                        "properties": Jsonb(r.properties),
                    },
                )
                row = cur.fetchone()
                if row is not None:
                    inserted += bool(row[0])
                    updated += not row[0]
            for r in records:
                if r.device_id is None:
                    continue
                cur.execute(
                    _UPSERT_DEVICE,
                    {
                        "tenant_id": tenant_id,
                        "device_id": r.device_id,
                        "device_kind": r.device_kind or kinds[r.kind].device_kind,
                        "asset_id": r.asset_id,
                        "reporting_interval_s": r.reporting_interval_s,
                    },
                )
                devices += 1
    return ImportReport(
        tenant_id=tenant_id,
        inserted=inserted,
        updated=updated,
        unchanged=len(records) - inserted - updated,
        devices=devices,
    )


@dataclass(frozen=True)
class InventorySummary:
    tenant_id: str
    assets_by_kind: dict[str, int]
    devices: int


def summary(conn: psycopg.Connection, tenant_id: str) -> InventorySummary:
    rows = conn.execute(
        "SELECT kind, count(*) FROM assets WHERE tenant_id = %s GROUP BY kind ORDER BY kind", (tenant_id,)
    ).fetchall()
    dev = conn.execute("SELECT count(*) FROM devices WHERE tenant_id = %s", (tenant_id,)).fetchone()
    return InventorySummary(
        tenant_id=tenant_id, assets_by_kind={k: int(n) for k, n in rows}, devices=int(dev[0]) if dev else 0
    )

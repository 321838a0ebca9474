"""Asset inventories as municipalities export them from their GIS: GeoJSON points or CSV.

Parsing turns each feature or row into an :class:`AssetRecord` or into problems
that name the line or feature, the field and why. Nothing here touches the
database; :mod:`storage.assets` checks the records against the stored tree and
writes them all or nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from floor.errors import InventoryError

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_FILE_BYTES = 64 * 1024 * 1024

COLUMNS = (
    "asset_id",
    "kind",
    "parent_id",
    "name",
    "district",
    "maintenance_area",
    "lat",
    "lon",
    "rated_power_w",
    "lamp_type",
    "install_date",
    "criticality",
    "device_id",
    "device_kind",
    "reporting_interval_s",
)


@dataclass(frozen=True)
class AssetRecord:
    """One asset of an inventory file, with the optional device that reports for it."""

    where: str
    """"line 7" or "feature 12": where the record stands in its file."""
    asset_id: str
    kind: str
    parent_id: str | None = None
    name: str | None = None
    district: str | None = None
    maintenance_area: str | None = None
    lat: float | None = None
    lon: float | None = None
    rated_power_w: float | None = None
    lamp_type: str | None = None
    install_date: date | None = None
    criticality: int = 2
    device_id: str | None = None
    device_kind: str | None = None
    reporting_interval_s: int | None = None
    properties: dict[str, Any] = field(default_factory=dict)


class _Row:
    """Collects typed fields of one feature or row and the problems found on the way."""

    def __init__(self, where: str, values: dict[str, Any], problems: list[str]) -> None:
        self.where = where
        self.values = values
        self.problems = problems

    def problem(self, name: str, why: str) -> None:
        self.problems.append(f"{self.where}, field {name!r}: {why}")

    def text(self, name: str, required: bool = False, pattern: re.Pattern[str] | None = None) -> str | None:
        raw = self.values.get(name)
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            if required:
                self.problem(name, "is required")
            return None
        if not isinstance(raw, (str, int)) or isinstance(raw, bool):
            self.problem(name, f"expected text, got {type(raw).__name__}")
            return None
        value = str(raw).strip()
        if pattern and not pattern.match(value):
            self.problem(
                name,
                f"{value!r} is not a valid identifier (letters, digits, '_', '.', ':', '-'; at most 128 characters)",
            )
            return None
        return value

    def number(self, name: str, low: float, high: float, *, exclusive_low: bool = False) -> float | None:
        raw = self.values.get(name)
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            return None
        if isinstance(raw, bool):
            self.problem(name, f"expected a number, got {raw!r}")
            return None
        try:
            value = float(raw.replace(",", ".") if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            self.problem(name, f"expected a number, got {raw!r}")
            return None
        too_low = value <= low if exclusive_low else value < low
        if not math.isfinite(value) or too_low or value > high:
            bound = f"greater than {low:g}" if exclusive_low else f"at least {low:g}"
            self.problem(name, f"{raw!r} is out of range (must be {bound} and at most {high:g})")
            return None
        return value

    def integer(self, name: str, low: int, high: int) -> int | None:
        value = self.number(name, low, high)
        if value is None:
            return None
        if value != int(value):
            self.problem(name, f"expected a whole number, got {self.values.get(name)!r}")
            return None
        return int(value)

    def day(self, name: str) -> date | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            self.problem(name, f"expected a date as YYYY-MM-DD, got {raw!r}")
            return None


def _record(row: _Row, lat: Any = None, lon: Any = None) -> AssetRecord | None:
    before = len(row.problems)
    if lat is not None or lon is not None:
        row.values = {**row.values, "lat": lat, "lon": lon}
    asset_id = row.text("asset_id", required=True, pattern=ID_PATTERN)
    kind = row.text("kind", required=True)
    record_kwargs: dict[str, Any] = {
        "parent_id": row.text("parent_id", pattern=ID_PATTERN),
        "name": row.text("name"),
        "district": row.text("district"),
        "maintenance_area": row.text("maintenance_area"),
        "lat": row.number("lat", -90, 90),
        "lon": row.number("lon", -180, 180),
        "rated_power_w": row.number("rated_power_w", 0, 100_000, exclusive_low=True),
        "lamp_type": row.text("lamp_type"),
        "install_date": row.day("install_date"),
        "device_id": row.text("device_id", pattern=ID_PATTERN),
        "device_kind": row.text("device_kind"),
        "reporting_interval_s": row.integer("reporting_interval_s", 1, 86_400 * 7),
    }
    criticality = row.integer("criticality", 1, 5)
    has_lat, has_lon = (row.values.get(k) not in (None, "") for k in ("lat", "lon"))
    if has_lat != has_lon:
        row.problem("lon" if has_lat else "lat", "lat and lon must be given together")
    if len(row.problems) > before or asset_id is None or kind is None:
        return None
    extra = {k: v for k, v in row.values.items() if k not in COLUMNS and k != "id" and v not in (None, "")}
    return AssetRecord(
        where=row.where,
        asset_id=asset_id,
        kind=kind,
        criticality=2 if criticality is None else criticality,
        properties=extra,
        **record_kwargs,
    )


def parse_csv(text: str, source: str = "CSV") -> list[AssetRecord]:
    problems: list[str] = []
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise InventoryError(source, ["line 1: the file is empty; expected a header line naming the columns"])
    names = [n.strip() for n in reader.fieldnames]
    for required in ("asset_id", "kind"):
        if required not in names:
            problems.append(f"line 1: the header has no {required!r} column")
    if problems:
        raise InventoryError(source, problems)
    records = []
    start = 2
    for values in reader:
        where = f"line {start}"
        start = reader.line_num + 1
        if None in values:
            problems.append(f"{where}: more cells than header columns")
            continue
        clean = {k.strip(): v for k, v in values.items() if k is not None}
        record = _record(_Row(where, clean, problems))
        if record:
            records.append(record)
    if problems:
        raise InventoryError(source, problems)
    return records


def parse_geojson(text: str, source: str = "GeoJSON") -> list[AssetRecord]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InventoryError(source, [f"line {exc.lineno}: not valid JSON ({exc.msg})"]) from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise InventoryError(source, ["the document must be a GeoJSON FeatureCollection with a 'features' list"])
    problems: list[str] = []
    records = []
    for number, feature in enumerate(doc["features"], start=1):
        where = f"feature {number}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            problems.append(f"{where}: not a GeoJSON Feature")
            continue
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            problems.append(f"{where}, field 'properties': expected an object")
            continue
        if "asset_id" not in props and feature.get("id") is not None:
            props = {**props, "asset_id": feature["id"]}
        geometry = feature.get("geometry")
        lat = lon = None
        if geometry is not None:
            coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
            if not isinstance(geometry, dict) or geometry.get("type") != "Point":
                problems.append(f"{where}, field 'geometry': expected a Point or null")
                continue
            if not isinstance(coords, list) or len(coords) not in (2, 3):
                problems.append(f"{where}, field 'geometry': coordinates must be [lon, lat] or [lon, lat, alt]")
                continue
            lon, lat = coords[0], coords[1]
            if lat is None or lon is None:
                problems.append(f"{where}, field 'geometry': coordinates must be numbers")
                continue
        record = _record(_Row(where, props, problems), lat=lat, lon=lon)
        if record:
            records.append(record)
    if problems:
        raise InventoryError(source, problems)
    return records


def parse_file(path: Path) -> list[AssetRecord]:
    """Read a ``.geojson``/``.json`` or ``.csv`` inventory; raise InventoryError listing every problem."""
    source = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InventoryError(source, ["the file does not exist"]) from None
    if size > MAX_FILE_BYTES:
        raise InventoryError(source, [f"the file has {size} bytes; the limit is {MAX_FILE_BYTES}"])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InventoryError(source, [f"byte {exc.start}: the file is not UTF-8 text"]) from None
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        return parse_geojson(text, source)
    if suffix == ".csv":
        return parse_csv(text, source)
    raise InventoryError(source, [f"unknown file type {suffix!r}; expected .geojson, .json or .csv"])

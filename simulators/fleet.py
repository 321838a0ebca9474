"""Fleets of virtual devices: from an asset inventory file, or generated around a centre point."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from pathlib import Path

from floor import lamps
from floor.inventory import AssetRecord, parse_file
from simulators.models import (
    BinFillSensor,
    CabinetMeter,
    Device,
    PumpController,
    RoadWeatherStation,
    Streetlight,
    WellLevelSensor,
)

MODELS: dict[str, type[Device]] = {
    "streetlight_controller": Streetlight,
    "cabinet_meter": CabinetMeter,
    "road_weather_station": RoadWeatherStation,
    "well_level_sensor": WellLevelSensor,
    "pump_controller": PumpController,
    "bin_fill_sensor": BinFillSensor,
}
DEFAULT_DEVICE_KIND = {
    "cabinet": "cabinet_meter",
    "streetlight": "streetlight_controller",
    "road_weather_station": "road_weather_station",
    "stormwater_well": "well_level_sensor",
    "pump_station": "pump_controller",
    "waste_bin": "bin_fill_sensor",
}
DEFAULT_INTERVAL_S = {
    "streetlight_controller": 600,
    "cabinet_meter": 300,
    "road_weather_station": 300,
    "well_level_sensor": 300,
    "pump_controller": 120,
    "bin_fill_sensor": 3600,
}


@dataclass
class Fleet:
    tenant: str
    timezone: str
    assets: dict[str, AssetRecord]
    devices: list[Device]

    def by_asset(self) -> dict[str, Device]:
        return {d.asset_id: d for d in self.devices}

    def children(self, asset_id: str) -> list[str]:
        """Every asset below ``asset_id`` in the tree."""
        below = [a.asset_id for a in self.assets.values() if a.parent_id == asset_id]
        return below + [c for b in below for c in self.children(b)]


def device_rng(seed: int, device_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{device_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - simulation, not secrets


def from_records(records: list[AssetRecord], tenant: str, seed: int, timezone: str = "Europe/Stockholm") -> Fleet:
    assets = {r.asset_id: r for r in records}
    devices: list[Device] = []
    for r in records:
        if r.device_id is None:
            continue
        kind = r.device_kind or DEFAULT_DEVICE_KIND[r.kind]
        lat, lon = _position(r, assets)
        interval = float(r.reporting_interval_s or DEFAULT_INTERVAL_S[kind])
        rng = device_rng(seed, r.device_id)
        device = MODELS[kind](
            tenant=tenant,
            device_id=r.device_id,
            asset_id=r.asset_id,
            kind=kind,
            interval_s=interval,
            lat=lat,
            lon=lon,
            rng=rng,
        )
        if isinstance(device, Streetlight):
            device.rated_power_w = r.rated_power_w or 50.0
            device.timezone = timezone
            # a controller counts the hours of the lamp it has served so far: somewhere in the lamp's life, a
            # few past it (drawn apart from the device's own random stream, which its readings use)
            life = lamps.rated_life_h(r.lamp_type) or lamps.DEFAULT_LIFE_H
            device.burning_hours_h = round(device_rng(seed + 1, r.device_id).uniform(0.0, 1.1 * life), 1)
        devices.append(device)
    lamps_by_cabinet: dict[str, list[Streetlight]] = {}
    for each in devices:
        if isinstance(each, Streetlight):
            lamps_by_cabinet.setdefault(_cabinet_of(each.asset_id, assets), []).append(each)
    for each in devices:
        if isinstance(each, CabinetMeter):
            each.lamps = lamps_by_cabinet.get(each.asset_id, [])
        elif isinstance(each, BinFillSensor):
            # collected twice a week: normal use stays below 85 %, only the binFull fault fills a bin
            each.per_day = each.rng.uniform(8.0, 18.0)
            each.fill_pct = each.rng.uniform(5.0, 40.0)
    return Fleet(tenant=tenant, timezone=timezone, assets=assets, devices=devices)


def _position(record: AssetRecord, assets: dict[str, AssetRecord]) -> tuple[float, float]:
    current: AssetRecord | None = record
    while current is not None:
        if current.lat is not None and current.lon is not None:
            return current.lat, current.lon
        current = assets.get(current.parent_id) if current.parent_id else None
    return 56.05, 12.69


def _cabinet_of(asset_id: str, assets: dict[str, AssetRecord]) -> str:
    current = assets.get(asset_id)
    while current is not None and current.kind != "cabinet":
        current = assets.get(current.parent_id) if current.parent_id else None
    return current.asset_id if current is not None else ""


def from_file(path: Path, tenant: str, seed: int, timezone: str = "Europe/Stockholm") -> Fleet:
    return from_records(parse_file(path), tenant, seed, timezone)


def generate(
    tenant: str,
    seed: int,
    *,
    centre: tuple[float, float] = (56.05, 12.69),
    cabinets: int = 10,
    circuits_per_cabinet: int = 4,
    lamps_per_circuit: int = 50,
    sensors: int = 20,
    timezone: str = "Europe/Stockholm",
) -> Fleet:
    """A synthetic town: cabinets on a ring around ``centre``, circuits as streets, and other sensors."""
    rng = random.Random(seed)  # noqa: S311 - simulation, not secrets
    records: list[AssetRecord] = []

    def at(north_m: float, east_m: float) -> tuple[float, float]:
        return (centre[0] + north_m / 111_320, centre[1] + east_m / (111_320 * math.cos(math.radians(centre[0]))))

    lamp = 0
    for c in range(cabinets):
        angle = 2 * math.pi * c / max(cabinets, 1)
        cab = f"CAB-{c + 1:03d}"
        clat, clon = at(1500 * math.cos(angle), 1500 * math.sin(angle))
        records.append(
            AssetRecord(
                where="generated",
                asset_id=cab,
                kind="cabinet",
                lat=clat,
                lon=clon,
                criticality=4,
                device_id=f"CABM-{c + 1:03d}",
                reporting_interval_s=300,
            )
        )
        for k in range(circuits_per_cabinet):
            circuit = f"{cab}-K{k + 1}"
            records.append(AssetRecord(where="generated", asset_id=circuit, kind="circuit", parent_id=cab))
            heading = rng.uniform(0, 2 * math.pi)
            power = rng.choice([36.0, 54.0, 70.0])
            for i in range(lamps_per_circuit):
                lamp += 1
                lat, lon = at(
                    1500 * math.cos(angle) + 30 * (i + 1) * math.cos(heading),
                    1500 * math.sin(angle) + 30 * (i + 1) * math.sin(heading),
                )
                records.append(
                    AssetRecord(
                        where="generated",
                        asset_id=f"SL-{lamp:06d}",
                        kind="streetlight",
                        parent_id=circuit,
                        lat=lat,
                        lon=lon,
                        rated_power_w=power,
                        lamp_type=f"{'LED' if power < 60 else 'HPS'} {power:g} W",
                        device_id=f"SLC-{lamp:06d}",
                        reporting_interval_s=600,
                    )
                )
    kinds = ["road_weather_station", "stormwater_well", "waste_bin", "pump_station"]
    for s in range(sensors):
        kind = kinds[s % len(kinds)]
        lat, lon = at(rng.uniform(-2000, 2000), rng.uniform(-2000, 2000))
        records.append(
            AssetRecord(
                where="generated",
                asset_id=f"{kind[:3].upper()}-{s + 1:04d}",
                kind=kind,
                lat=lat,
                lon=lon,
                device_id=f"D-{kind[:3].upper()}-{s + 1:04d}",
                reporting_interval_s=DEFAULT_INTERVAL_S[DEFAULT_DEVICE_KIND[kind]],
            )
        )
    return from_records(records, tenant, seed, timezone)

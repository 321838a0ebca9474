"""Generate the sample inventory of Solvik, a fictional Swedish town: the Norra hamnen and Gamla staden districts.

Deterministic (fixed seed): running it again writes the same files.

    .venv/bin/python examples/make_sample_inventory.py
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

from floor import inventory

HERE = Path(__file__).resolve().parent
CENTRE = (56.0465, 12.6945)  # lat, lon, on the Öresund coast
LAMPS = [("LED 36 W", 36.0), ("LED 54 W", 54.0), ("HPS 70 W", 70.0), ("CMH 60 W", 60.0)]
STREETS = {
    "CAB-01": ("Norra hamnen", "Norr", [("Hamngatan", 34), ("Kajpromenaden", 28), ("Fyrvägen", 22)]),
    "CAB-02": ("Norra hamnen", "Norr", [("Varvsgatan", 36), ("Slipgatan", 30)]),
    "CAB-03": ("Gamla staden", "Syd", [("Stortorget", 24), ("Kyrkogatan", 38), ("Kvarngatan", 32)]),
}


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (
        round(lat + north_m / 111_320, 6),
        round(lon + east_m / (111_320 * math.cos(math.radians(lat))), 6),
    )


def build() -> list[dict[str, Any]]:
    rng = random.Random(20261127)
    assets: list[dict[str, Any]] = []
    lamp_no = 0
    for c, (cab_id, (district, area, streets)) in enumerate(STREETS.items()):
        cab_lat, cab_lon = offset(*CENTRE, 400 - c * 450, -300 + c * 250)
        assets.append(
            {
                "asset_id": cab_id,
                "kind": "cabinet",
                "name": f"Belysningsskåp {cab_id[-2:]}",
                "district": district,
                "maintenance_area": area,
                "lat": cab_lat,
                "lon": cab_lon,
                "install_date": f"{2004 + c * 3}-05-1{c}",
                "criticality": 4,
                "device_id": f"CABM-{cab_id[-2:]}",
                "reporting_interval_s": 300,
            }
        )
        for s, (street, count) in enumerate(streets):
            circuit = f"{cab_id}-K{s + 1}"
            assets.append(
                {
                    "asset_id": circuit,
                    "kind": "circuit",
                    "parent_id": cab_id,
                    "name": f"Grupp {s + 1} {street}",
                    "district": district,
                    "maintenance_area": area,
                }
            )
            heading = math.radians(rng.uniform(0, 360))
            lamp_type, power = LAMPS[rng.randrange(len(LAMPS))]
            for i in range(count):
                lamp_no += 1
                dist = 30 + i * 32
                lat, lon = offset(
                    cab_lat,
                    cab_lon,
                    dist * math.cos(heading) + rng.uniform(-2, 2),
                    dist * math.sin(heading) + rng.uniform(-2, 2),
                )
                crossing = i % 11 == 5
                assets.append(
                    {
                        "asset_id": f"SL-{lamp_no:04d}",
                        "kind": "streetlight",
                        "parent_id": circuit,
                        "name": f"{street} {i + 1}",
                        "district": district,
                        "maintenance_area": area,
                        "lat": lat,
                        "lon": lon,
                        "rated_power_w": power,
                        "lamp_type": lamp_type,
                        "install_date": f"{rng.randint(1998, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                        "criticality": 3 if crossing else 2,
                        "device_id": f"SLC-{lamp_no:04d}",
                        "reporting_interval_s": 600,
                        "pole_height_m": rng.choice([6, 8, 10]),
                        "crossing": "yes" if crossing else "",
                    }
                )
    others = [
        ("RWS-01", "road_weather_station", "Vägväderstation Hamnbron", 150, -500, 300, 4, None),
        ("RWS-02", "road_weather_station", "Vägväderstation Backen", -700, 200, 300, 4, None),
        ("SW-01", "stormwater_well", "Dagvattenbrunn Hamngatan", 350, -150, 300, 3, None),
        ("SW-02", "stormwater_well", "Dagvattenbrunn Varvsgatan", -50, 120, 300, 3, None),
        ("SW-03", "stormwater_well", "Dagvattenbrunn Stortorget", -520, 60, 300, 3, None),
        ("SW-04", "stormwater_well", "Dagvattenbrunn Kvarngatan", -760, -80, 300, 3, None),
        ("PS-01", "pump_station", "Pumpstation Södra kajen", -600, 320, 120, 5, "CAB-03"),
    ]
    others += [
        (f"WB-{n:02d}", "waste_bin", f"Papperskorg {n}", -300 + n * 110, -200 + (n % 3) * 140, 3600, 1, None)
        for n in range(1, 7)
    ]
    for asset_id, kind, name, north, east, interval, criticality, parent in others:
        lat, lon = offset(*CENTRE, north, east)
        district = "Norra hamnen" if north > -100 else "Gamla staden"
        record: dict[str, Any] = {
            "asset_id": asset_id,
            "kind": kind,
            "name": name,
            "district": district,
            "maintenance_area": "Norr" if north > -100 else "Syd",
            "lat": lat,
            "lon": lon,
            "criticality": criticality,
            "device_id": f"D-{asset_id}",
            "reporting_interval_s": interval,
            "install_date": f"20{18 + len(asset_id) % 5}-0{1 + criticality}-15",
        }
        if parent:
            record["parent_id"] = parent
        assets.append(record)
    return assets


# the inventory format's columns (floor/inventory.py) without the device kind, which follows from the asset kind,
# and two properties the format keeps as they are
COLUMNS = [c for c in inventory.COLUMNS if c != "device_kind"] + ["pole_height_m", "crossing"]


def main() -> None:
    assets = build()
    features = []
    for a in assets:
        props = {k: v for k, v in a.items() if k not in ("lat", "lon") and v not in ("", None)}
        geometry = {"type": "Point", "coordinates": [a["lon"], a["lat"]]} if "lat" in a else None
        features.append({"type": "Feature", "geometry": geometry, "properties": props})
    doc = {"type": "FeatureCollection", "name": "solvik-norra-hamnen", "features": features}
    (HERE / "solvik.geojson").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    with (HERE / "solvik.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for a in assets:
            writer.writerow({k: a.get(k, "") for k in COLUMNS})


if __name__ == "__main__":
    main()

"""Device models: what each kind of field device reports at a given moment, faults included.

Every model is deterministic for a given seed: its random numbers come from its
own generator, seeded from the scenario seed and the device id, so devices can
be stepped in any order. Times are epoch seconds of simulated time.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from floor.sun import is_dark

OFF_STANDBY_W = 0.6  # a streetlight controller's own consumption with the lamp off
EFFICIENCY = 0.92  # LED driver efficiency: drawn power = rated x dim / efficiency


@dataclass
class ActiveFault:
    code: str
    start: float
    end: float
    params: dict[str, Any]

    def progress(self, t: float) -> float:
        return 0.0 if self.end <= self.start else min(1.0, max(0.0, (t - self.start) / (self.end - self.start)))


@dataclass
class Device:
    """A device bound to an asset; subclasses report the metrics of their kind."""

    tenant: str
    device_id: str
    asset_id: str
    kind: str
    interval_s: float
    lat: float
    lon: float
    rng: random.Random
    faults: list[ActiveFault] = field(default_factory=list)
    last_t: float | None = None
    observed: list[tuple[str, float, float]] = field(default_factory=list)
    """natural conditions the model produced on its own (code, start, end), for the ground truth"""
    _since: dict[str, float] = field(default_factory=dict)

    def observe(self, code: str, t: float, holds: bool) -> None:
        """Track a natural condition: a period opens when it starts holding and closes when it stops."""
        if holds and code not in self._since:
            self._since[code] = t
        elif not holds and code in self._since:
            self.observed.append((code, self._since.pop(code), t))

    def close_observations(self, t: float) -> None:
        for code, since in sorted(self._since.items()):
            self.observed.append((code, since, t))
        self._since.clear()

    def active(self, t: float) -> dict[str, ActiveFault]:
        return {f.code: f for f in self.faults if f.start <= t < f.end}

    def metrics(self, t: float) -> dict[str, float]:
        raise NotImplementedError

    def events(self, t: float) -> list[dict[str, Any]]:
        return []

    def noise(self, sigma: float) -> float:
        return self.rng.gauss(0.0, sigma)


@dataclass
class Streetlight(Device):
    rated_power_w: float = 50.0
    timezone: str = "Europe/Stockholm"
    energy_kwh: float = 0.0
    burning_hours_h: float = 0.0
    switch_count: int = 0
    was_on: bool = False
    tilted: bool = False

    def dim_level(self, t: float) -> float:
        """100 % at night, 50 % from 00:00 to 05:00 local time."""
        local = datetime.fromtimestamp(t, ZoneInfo(self.timezone))
        return 50.0 if local.hour < 5 else 100.0

    def state(self, t: float) -> tuple[bool, float, float]:
        """(relay on, dim level, drawn power without noise) at t, faults applied."""
        faults = self.active(t)
        dark = is_dark(self.lat, self.lon, t)
        on = dark or "lampUnexpectedOn" in faults
        if "cyclingFailure" in faults and dark:
            # the lamp strikes, overheats and drops out every few minutes
            on = int(t // 240) % 2 == 0
        dim = self.dim_level(t) if dark else 100.0
        power = self.rated_power_w * dim / 100.0 / EFFICIENCY if on else OFF_STANDBY_W
        if on and "lampFailure" in faults:
            power = OFF_STANDBY_W
        if on and "driverDegradation" in faults:
            fault = faults["driverDegradation"]
            power *= 1.0 + float(fault.params.get("drift", 0.4)) * fault.progress(t)
        return on, dim, power

    def metrics(self, t: float) -> dict[str, float]:
        on, dim, power = self.state(t)
        faults = self.active(t)
        elapsed = 0.0 if self.last_t is None else t - self.last_t
        switches = 0
        if "cyclingFailure" in faults and is_dark(self.lat, self.lon, t):
            switches = max(1, int(elapsed // 480))
        elif on and not self.was_on:
            switches = 1
        self.switch_count += switches
        self.was_on = on
        measured = max(0.0, power * (1 + self.noise(0.015)))
        voltage = 230.0 + self.noise(1.5)
        pf = 0.96 + self.noise(0.005) if on and power > 1 else 0.5 + self.noise(0.02)
        self.energy_kwh += measured * elapsed / 3_600_000
        if on and power > 1:
            self.burning_hours_h += elapsed / 3600
        self.last_t = t
        out = {
            "power_w": round(measured, 2),
            "voltage_v": round(voltage, 1),
            "current_a": round(measured / (voltage * max(pf, 0.1)), 3),
            "power_factor": round(min(max(pf, 0.0), 1.0), 3),
            "dim_level_pct": dim if on else 0.0,
            "lamp_on": 1.0 if on else 0.0,
            "energy_kwh": round(self.energy_kwh, 4),
            "burning_hours_h": round(self.burning_hours_h, 3),
            "switch_count": float(self.switch_count),
        }
        if "poleTilt" in faults:
            out["tilt_deg"] = float(faults["poleTilt"].params.get("degrees", 14.0))
        return out

    def events(self, t: float) -> list[dict[str, Any]]:
        faults = self.active(t)
        if "poleTilt" in faults and not self.tilted:
            self.tilted = True
            return [{"event": "pole_tilt", "value": float(faults["poleTilt"].params.get("degrees", 14.0))}]
        if "poleTilt" not in faults:
            self.tilted = False
        return []


@dataclass
class CabinetMeter(Device):
    lamps: list[Streetlight] = field(default_factory=list)
    energy_kwh: float = 0.0
    supply_was_ok: bool = True
    door_was_open: bool = False

    def supply_ok(self, t: float) -> bool:
        return "supplyLoss" not in self.active(t)

    def metrics(self, t: float) -> dict[str, float]:
        ok = self.supply_ok(t)
        load = sum(lamp.state(t)[2] for lamp in self.lamps) + 15.0 if ok else 0.0
        elapsed = 0.0 if self.last_t is None else t - self.last_t
        self.energy_kwh += load * elapsed / 3_600_000
        self.last_t = t
        phases = {f"voltage_l{n}_v": round(231.0 + self.noise(1.2), 1) if ok else 0.0 for n in (1, 2, 3)}
        door = self.door_open(t)
        return {
            "power_w": round(load * (1 + self.noise(0.005)), 1),
            "current_a": round(load / 400.0, 2),
            "energy_kwh": round(self.energy_kwh, 3),
            "supply_ok": 1.0 if ok else 0.0,
            "door_open": 1.0 if door else 0.0,
            **phases,
        }

    def door_open(self, t: float) -> bool:
        return "doorOpen" in self.active(t)

    def events(self, t: float) -> list[dict[str, Any]]:
        out = []
        ok, door = self.supply_ok(t), self.door_open(t)
        if ok != self.supply_was_ok:
            out.append({"event": "supply_restored" if ok else "supply_lost"})
        if door != self.door_was_open:
            out.append({"event": "door_open" if door else "door_closed"})
        self.supply_was_ok, self.door_was_open = ok, door
        return out


def dew_point(temp_c: float, humidity_pct: float) -> float:
    """Magnus formula."""
    a, b = 17.62, 243.12
    gamma = math.log(max(humidity_pct, 1.0) / 100.0) + a * temp_c / (b + temp_c)
    return b * gamma / (a - gamma)


@dataclass
class RoadWeatherStation(Device):
    weather: float = 0.0  # slow random walk of the weather, °C
    moisture: float = 0.0  # slow random walk of the humidity, %
    frozen: bool = False

    def metrics(self, t: float) -> dict[str, float]:
        day_of_year = datetime.fromtimestamp(t, UTC).timetuple().tm_yday
        seasonal = 8.0 - 9.0 * math.cos(2 * math.pi * (day_of_year - 20) / 365)  # about -1 in Jan, 17 in Jul
        hour = ((t / 3600) + self.lon / 15) % 24
        daily = 3.5 * math.cos(2 * math.pi * (hour - 14.5) / 24)
        self.weather = 0.995 * self.weather + self.noise(0.08)
        air = seasonal + daily + self.weather
        self.moisture = 0.98 * self.moisture + self.noise(0.6)
        humidity = min(99.0, max(40.0, 80.0 - 2.0 * daily + self.moisture))
        # Clear nights cool the road below the air.
        road = air - (2.0 if not 7 <= hour <= 17 else -1.5)
        faults = self.active(t)
        if "icyRoad" in faults:
            air = min(air, float(faults["icyRoad"].params.get("air_c", -1.0)))
            humidity = 96.0
            road = min(road, float(faults["icyRoad"].params.get("road_c", -2.5)))
        dew = dew_point(air, humidity)
        # Winter nights freeze on their own; the ground truth records those periods as well as injected ones.
        # Frost sets in at or below 0 °C and the dew point, and is gone above 0.5 °C or 0.5 K over the dew point.
        if road <= 0.0 and road <= dew:
            self.frozen = True
        elif road > 0.5 or road > dew + 0.5:
            self.frozen = False
        self.observe("icyRoad", t, "icyRoad" not in faults and self.frozen)
        return {
            "air_temp_c": round(air, 2),
            "road_temp_c": round(road, 2),
            "humidity_pct": round(humidity, 1),
            "dew_point_c": round(dew, 2),
        }


@dataclass
class WellLevelSensor(Device):
    level_m: float = 0.4
    rain_until: float = 0.0
    rain_rate: float = 0.0

    def metrics(self, t: float) -> dict[str, float]:
        elapsed = 0.0 if self.last_t is None else t - self.last_t
        self.last_t = t
        if t >= self.rain_until and self.rng.random() < elapsed / (36 * 3600):
            self.rain_until = t + self.rng.uniform(1800, 7200)
            self.rain_rate = self.rng.uniform(0.05, 0.25) / 3600  # m per second while it rains
        inflow = self.rain_rate * elapsed if t < self.rain_until else 0.0
        drain = (self.level_m - 0.3) * (1 - math.exp(-elapsed / 5400))
        self.level_m = min(1.6, max(0.3, self.level_m + inflow - drain))
        level = self.level_m
        faults = self.active(t)
        if "wellOverflow" in faults:
            level = float(faults["wellOverflow"].params.get("level_m", 2.6))
        return {"water_level_m": round(max(0.0, level + self.noise(0.005)), 3)}


@dataclass
class PumpController(Device):
    def metrics(self, t: float) -> dict[str, float]:
        faults = self.active(t)
        running = (t % 3600) < 900  # 15 minutes an hour
        fault = "pumpFault" in faults
        if fault:
            running = False
        return {
            "pump_running": 1.0 if running else 0.0,
            "motor_current_a": round(12.5 + self.noise(0.3), 2) if running else 0.0,
            "pump_fault": 1.0 if fault else 0.0,
        }


@dataclass
class BinFillSensor(Device):
    fill_pct: float = 20.0
    per_day: float = 15.0
    collected: bool = False

    def metrics(self, t: float) -> dict[str, float]:
        elapsed = 0.0 if self.last_t is None else t - self.last_t
        self.last_t = t
        faults = self.active(t)
        local = datetime.fromtimestamp(t, UTC)
        collection_day = local.weekday() in (0, 3) and 6 <= local.hour < 7
        self.collected = False
        if collection_day and self.fill_pct > 30 and "binFull" not in faults:
            self.fill_pct = self.rng.uniform(0.0, 3.0)
            self.collected = True
        rate = self.per_day * (4.0 if "binFull" in faults else 1.0)
        self.fill_pct = min(100.0, self.fill_pct + rate * elapsed / 86400 * self.rng.uniform(0.6, 1.4))
        return {"fill_pct": round(self.fill_pct, 1)}

    def events(self, t: float) -> list[dict[str, Any]]:
        return [{"event": "collected"}] if self.collected else []

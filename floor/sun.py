"""When a streetlight should burn: from civil dusk to civil dawn at its own position (astral)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np
from astral import Observer
from astral.sun import dawn, dusk, elevation

CIVIL_DEPRESSION = 6.0
PLACE_DECIMALS = 2
"""Positions are rounded to 0.01 degree (about 1 km): dawn and dusk move by seconds across such a cell, and a
city of 100,000 lamps needs a few hundred sun computations a day instead of one per lamp."""


@lru_cache(maxsize=262_144)
def _day(lat: float, lon: float, day: dt.date) -> tuple[float, float] | bool:
    """(dawn, dusk) in epoch seconds for the solar day ``day``; True: dark all day; False: never dark."""
    observer = Observer(latitude=lat, longitude=lon)
    try:
        return (
            dawn(observer, day, depression=CIVIL_DEPRESSION).timestamp(),
            dusk(observer, day, depression=CIVIL_DEPRESSION).timestamp(),
        )
    except ValueError:
        noon = dt.datetime.combine(day, dt.time(12), dt.UTC) - dt.timedelta(hours=lon / 15)
        return bool(elevation(observer, noon) < -CIVIL_DEPRESSION)


def solar_date(lon: float, t: float) -> dt.date:
    """The date of local mean solar time at longitude ``lon``: dawn and dusk of one night never straddle it."""
    return dt.datetime.fromtimestamp(t + lon / 15 * 3600, dt.UTC).date()


def is_dark(lat: float, lon: float, t: float) -> bool:
    """True between civil dusk and civil dawn at (lat, lon) at epoch time ``t``."""
    day = _day(round(lat, PLACE_DECIMALS), round(lon, PLACE_DECIMALS), solar_date(lon, t))
    if isinstance(day, bool):
        return day
    dawn_t, dusk_t = day
    return t < dawn_t or t >= dusk_t


def switch_times(lat: float, lon: float, day: dt.date) -> tuple[float, float] | None:
    """(civil dawn, civil dusk) of a solar day, or None in polar day or night."""
    result = _day(round(lat, PLACE_DECIMALS), round(lon, PLACE_DECIMALS), day)
    return None if isinstance(result, bool) else result


def dark_mask(lat: np.ndarray, lon: np.ndarray, t: np.ndarray) -> np.ndarray:
    """:func:`is_dark` over arrays, one sun computation per place and solar day (no position: not dark)."""
    lat = np.round(np.asarray(lat, dtype=float), PLACE_DECIMALS)
    lon = np.round(np.asarray(lon, dtype=float), PLACE_DECIMALS)
    t = np.asarray(t, dtype=float)
    out = np.zeros(len(t), dtype=bool)
    placed = ~(np.isnan(lat) | np.isnan(lon) | np.isnan(t))
    if not placed.any():
        return out
    la, lo, tt = lat[placed], lon[placed], t[placed]
    days = np.floor((tt + lo / 15 * 3600) / 86400).astype(np.int64)
    scale = 10**PLACE_DECIMALS
    # one integer per (place, solar day): sorting integers is far cheaper than sorting rows
    cells = (
        (np.rint(la * scale).astype(np.int64) + 90 * scale) * (360 * scale + 1)
        + np.rint(lo * scale).astype(np.int64)
        + 180 * scale
    ) * 1_000_000 + days
    unique, first, inverse = np.unique(cells, return_index=True, return_inverse=True)
    dawn = np.empty(len(unique))
    dusk = np.empty(len(unique))
    for n, i in enumerate(first):
        result = _day(float(la[i]), float(lo[i]), dt.date(1970, 1, 1) + dt.timedelta(days=int(days[i])))
        if isinstance(result, bool):  # polar night: dark all day (dawn after dusk); polar day: never dark
            dawn[n], dusk[n] = (np.inf, -np.inf) if result else (-np.inf, np.inf)
        else:
            dawn[n], dusk[n] = result
    inverse = inverse.reshape(-1)
    out[placed] = (tt < dawn[inverse]) | (tt >= dusk[inverse])
    return out


def elevation_deg(lat: np.ndarray, lon: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The sun's elevation in degrees at (lat, lon) at epoch times ``t``, vectorised (NOAA's low-precision
    formulas: within a few hundredths of a degree of astral near the horizon, refraction not included)."""
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    t = np.asarray(t, dtype=float)
    days = t / 86400.0 + 2440587.5 - 2451545.0  # days since J2000.0
    g = np.radians((357.529 + 0.98560028 * days) % 360)  # mean anomaly
    q = (280.459 + 0.98564736 * days) % 360  # mean longitude
    ecliptic = np.radians(q + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g))
    obliquity = np.radians(23.439 - 0.00000036 * days)
    declination = np.arcsin(np.sin(obliquity) * np.sin(ecliptic))
    right_ascension = np.degrees(np.arctan2(np.cos(obliquity) * np.sin(ecliptic), np.cos(ecliptic))) % 360
    sidereal = (280.46061837 + 360.98564736629 * days + lon) % 360
    hour_angle = np.radians(sidereal - right_ascension)
    phi = np.radians(lat)
    sin_el = np.sin(phi) * np.sin(declination) + np.cos(phi) * np.cos(declination) * np.cos(hour_angle)
    out: np.ndarray = np.degrees(np.arcsin(np.clip(sin_el, -1.0, 1.0)))
    return out

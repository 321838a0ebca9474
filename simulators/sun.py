"""When a streetlight should burn: from civil dusk to civil dawn at its own position (astral)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

from astral import Observer
from astral.sun import dawn, dusk, elevation

CIVIL_DEPRESSION = 6.0


@lru_cache(maxsize=65_536)
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
    day = _day(round(lat, 3), round(lon, 3), solar_date(lon, t))
    if isinstance(day, bool):
        return day
    dawn_t, dusk_t = day
    return t < dawn_t or t >= dusk_t


def switch_times(lat: float, lon: float, day: dt.date) -> tuple[float, float] | None:
    """(civil dawn, civil dusk) of a solar day, or None in polar day or night."""
    result = _day(round(lat, 3), round(lon, 3), day)
    return None if isinstance(result, bool) else result

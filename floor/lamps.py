"""Lamps' rated life by family: the first word of an asset's lamp type ("HPS 70 W" is HPS).

Typical manufacturers' figures in burning hours (for LED the hours to L70, 70 % of the light left). The table
``lamp_families`` (migration 0015) holds the same figures for the dashboards; an asset's property
``rated_life_h`` overrides its family's.
"""

from __future__ import annotations

RATED_LIFE_H: dict[str, int] = {
    "LED": 60_000,
    "HPS": 24_000,
    "LPS": 18_000,
    "CMH": 15_000,
    "MH": 12_000,
    "HPM": 16_000,
    "CFL": 12_000,
}
DEFAULT_LIFE_H = 24_000
"""For a lamp type lykta does not know (the simulators' lamps only; the dashboards show no rated life then)."""


def family(lamp_type: str | None) -> str | None:
    """The family of a lamp type, or None without one."""
    if not lamp_type or not lamp_type.split():
        return None
    return lamp_type.split()[0].upper()


def rated_life_h(lamp_type: str | None) -> int | None:
    f = family(lamp_type)
    return RATED_LIFE_H.get(f) if f else None

"""Times as lykta writes them for people and machines: RFC 3339 in UTC, to the second, with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def iso(t: float) -> str:
    """``2026-12-01T12:00:00Z`` for a POSIX time."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_or_none(t: float | None) -> str | None:
    return None if t is None else iso(t)


def local(t: float, timezone: str) -> str:
    """``2026-11-11 00:00 CET``: a POSIX time as people in ``timezone`` read it, to the minute, the zone named."""
    return datetime.fromtimestamp(t, ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")

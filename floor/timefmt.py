"""Times as lykta writes them for people and machines: RFC 3339 in UTC, to the second, with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(t: float) -> str:
    """``2026-12-01T12:00:00Z`` for a POSIX time."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_or_none(t: float | None) -> str | None:
    return None if t is None else iso(t)

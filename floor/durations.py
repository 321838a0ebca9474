"""Durations as people write them in rule and scenario files: 30s, 25m, 2h, 1d8h."""

from __future__ import annotations

import re

_SPAN = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ValueError when it is not a duration."""
    match = _SPAN.match(text.strip())
    if not text.strip() or not match or not any(match.groups()):
        raise ValueError(text)
    d, h, m, s = (int(g or 0) for g in match.groups())
    return float(d * 86400 + h * 3600 + m * 60 + s)

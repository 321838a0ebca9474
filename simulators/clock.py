"""Simulated time: a start, and an acceleration factor (``speed``) or as fast as possible (``None``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class SimClock:
    start: float
    """simulated epoch seconds at which the simulation begins"""
    speed: float | None = None
    """simulated seconds per wall second; None runs as fast as possible (a week in a minute is 10080)"""
    wall: Callable[[], float] = time.monotonic
    _wall0: float | None = field(default=None, init=False)

    def begin(self) -> None:
        self._wall0 = self.wall()

    def delay(self, t: float) -> float:
        """Wall seconds to wait until simulated time ``t`` is due (0 when it is, or with no pacing)."""
        if self.speed is None:
            return 0.0
        if self._wall0 is None:
            self._wall0 = self.wall()
        return max(0.0, self._wall0 + (t - self.start) / self.speed - self.wall())

    def now(self) -> float:
        """Simulated time that corresponds to the wall clock now (the start with no pacing)."""
        if self.speed is None or self._wall0 is None:
            return self.start
        return self.start + (self.wall() - self._wall0) * self.speed

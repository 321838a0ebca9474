"""Replaying a rule over a whole period at once: the episodes that evaluating after every reading would produce.

Equivalent to evaluating "as of" each reading time in turn (rules.evaluate), but
one pass over the condition series per asset, so a week of a city can be scored
in seconds. Used by the detection-quality benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Episode:
    asset_id: str
    observed_at: float
    """when the condition started"""
    detected_at: float
    """when it had held long enough for a finding to open"""
    cleared_at: float | None
    """when it went away, for good enough to close the finding; None: still open at the end"""


def replay(conditions: pd.DataFrame, hold_s: float, clear_s: float) -> list[Episode]:
    out: list[Episode] = []
    if conditions.empty:
        return out
    for asset_id, group in conditions.sort_values(["asset_id", "t"]).groupby("asset_id", sort=False):
        flags = group["bad"].ffill().to_numpy()
        times = group["t"].to_numpy()
        known = ~np.isnan(flags)
        flags, times = flags[known], times[known]
        opened: tuple[float, float] | None = None
        run_start = times[0] if len(times) else 0.0
        for i in range(len(times)):
            if i > 0 and flags[i] != flags[i - 1]:
                run_start = times[i]
            if flags[i] == 1.0 and opened is None and times[i] - run_start >= hold_s:
                opened = (float(run_start), float(times[i]))
            elif flags[i] == 0.0 and opened is not None and times[i] - run_start >= clear_s:
                out.append(Episode(str(asset_id), opened[0], opened[1], float(run_start)))
                opened = None
        if opened is not None:
            out.append(Episode(str(asset_id), opened[0], opened[1], None))
    return out


def replay_silence(times: dict[str, np.ndarray], limits: dict[str, float], end: float) -> list[Episode]:
    """Gaps longer than each device's limit: observed at the last reading, detected a limit later."""
    out = []
    for asset_id, limit in limits.items():
        seen = np.sort(times.get(asset_id, np.array([])))
        if len(seen) == 0:
            continue
        gaps = np.nonzero(np.diff(seen) > limit)[0]
        for g in gaps:
            out.append(Episode(asset_id, float(seen[g]), float(seen[g] + limit), float(seen[g + 1])))
        if end - seen[-1] > limit:
            out.append(Episode(asset_id, float(seen[-1]), float(seen[-1] + limit), None))
    return out

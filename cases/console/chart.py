"""A case's chart: the asset's relevant reading from a day before its fault was seen until a day after it ended
(or now), drawn on the server as SVG (no script, readable in any browser, printable)."""

from __future__ import annotations

from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

import psycopg

from storage import case_assets as asset_store
from storage.cases import Case

METRIC = {
    "lampFailure": "power_w", "lampUnexpectedOn": "power_w", "cyclingFailure": "power_w",
    "powerDeviation": "power_w", "photocellFailure": "lamp_on", "communicationFailure": "power_w",
    "supplyLoss": "voltage_l1_v",
    "doorOpen": "door_open", "poleTilt": "tilt_deg", "icyRoad": "road_temp_c", "wellOverflow": "water_level_m",
    "binFull": "fill_pct", "pumpFault": "motor_current_a",
}  # fmt: skip
WIDTH, HEIGHT, PAD = 720, 240, 44


def chart_svg(conn: psycopg.Connection, c: Case, timezone: str, empty: str) -> str:
    metric = METRIC.get(c.fault, "power_w")
    start = c.observed_at - 86400
    end = (c.resolved_at or c.fault_cleared_at or c.observed_at) + 86400
    asset = asset_store.asset(conn, c.tenant_id, c.asset_id)
    points = (
        asset_store.readings(conn, asset.device_key, metric, start, end, max(60.0, (end - start) / 360))
        if asset is not None and asset.device_key is not None
        else []
    )
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(metric)} {escape(c.asset_id)}"><rect width="100%" height="100%" fill="#fff"/>'
    )
    if not points:
        return head + f'<text x="{PAD}" y="{HEIGHT / 2}" font-size="16" fill="#444">{escape(empty)}</text></svg>'
    low = min(v for _, v in points)
    high = max(v for _, v in points)
    high = high if high > low else low + 1

    def x(t: float) -> float:
        return PAD + (t - start) / (end - start) * (WIDTH - 2 * PAD)

    def y(v: float) -> float:
        return HEIGHT - PAD - (v - low) / (high - low) * (HEIGHT - 2 * PAD)

    zone = ZoneInfo(timezone)
    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
    seen = x(c.observed_at)
    parts = [
        head,
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>',
        f'<line x1="{seen:.1f}" y1="{PAD / 2}" x2="{seen:.1f}" y2="{HEIGHT - PAD}" stroke="#c0392b" '
        'stroke-dasharray="4 3"/>',
        f'<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="{line}"/>',
        f'<text x="4" y="{PAD / 2 + 4}" font-size="13" fill="#222">{escape(metric)}: {low:.3g} to {high:.3g}</text>',
    ]
    for t in (start, c.observed_at, end):
        label = datetime.fromtimestamp(t, zone).strftime("%d %b %H:%M")
        parts.append(f'<text x="{x(t):.1f}" y="{HEIGHT - PAD / 3}" font-size="12" text-anchor="middle" fill="#222">'
                     f"{escape(label)}</text>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)

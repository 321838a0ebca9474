"""Load mode: a fixed number of realistic streetlight messages, as fast as possible or at a fixed rate.

Used by benchmarks and by ``lykta simulate --load``. Message ``i`` goes to device
``i mod len(devices)`` with device time ``base + i * step`` (or the publish time
with ``wall_clock``), so every message carries distinct readings and the
expected database contents are known exactly.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from floor.errors import LyktaError
from simulators.publisher import connection


@dataclass(frozen=True)
class LoadPlan:
    tenant: str
    devices: Sequence[str]
    start: int
    stop: int
    base: float
    step: float = 0.001
    wall_clock: bool = False
    rate: float = 0.0
    """messages per second over all connections; 0 means as fast as possible"""
    connections: int = 1
    qos: int = 1
    poison_every: int = 0
    """every n-th message is an event whose detail holds U+0000 (which PostgreSQL cannot store); 0: none"""


def streetlight_payload(i: int, ts: float) -> bytes:
    """Six metrics, as a streetlight controller reports them."""
    return orjson.dumps(
        {
            "ts": ts,
            "seq": i,
            "metrics": {
                "power_w": 35.0 + i % 13,
                "voltage_v": 229.0 + i % 3,
                "current_a": 0.17,
                "power_factor": 0.95,
                "dim_level_pct": 100 if i % 2 else 50,
                "lamp_on": 1,
            },
        }
    )


async def _one(  # noqa: PLR0917 - one connection of run_load
    host: str,
    port: int,
    plan: LoadPlan,
    index: int,
    began: float,
    login: tuple[str, str] | None,
    tls: ssl.SSLContext | None,
) -> int:
    topics = [f"lykta/{plan.tenant}/streetlight_controller/{d}/telemetry" for d in plan.devices]
    rate = plan.rate / plan.connections if plan.rate else 0.0
    sent = 0
    client_id = login[0] if login is not None else f"lykta-load-{plan.start}-{index}"
    async with connection(host, port, client_id, login=login, tls=tls) as pub:
        for i in range(plan.start + index, plan.stop, plan.connections):
            if rate:
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    await pub.flush()
                    await asyncio.sleep(ahead)
            ts = time.time() if plan.wall_clock else plan.base + i * plan.step
            if plan.poison_every and i % plan.poison_every == 0:
                topic = topics[i % len(topics)].rsplit("/", 1)[0] + "/event"
                poison = orjson.dumps({"ts": ts, "event": "pole_tilt", "detail": {"note": f"nul \u0000 {i}"}})
                await pub.publish(topic, poison, plan.qos)
            else:
                await pub.publish(topics[i % len(topics)], streetlight_payload(i, ts), plan.qos)
            sent += 1
    return sent


async def run_load(
    host: str, port: int, plan: LoadPlan, *, login: tuple[str, str] | None = None, tls: ssl.SSLContext | None = None
) -> tuple[int, float]:
    """Publish the plan; returns (messages acknowledged by the broker, seconds)."""
    if login is not None and plan.connections > 1:
        raise LyktaError(
            f"an account connects once (the broker binds its client id to {login[0]!r}): use --connections 1"
        )
    began = time.monotonic()
    counts = await asyncio.gather(*(_one(host, port, plan, k, began, login, tls) for k in range(plan.connections)))
    return sum(counts), time.monotonic() - began

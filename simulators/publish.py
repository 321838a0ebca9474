"""Publishing a simulation to the broker, paced by a simulated clock.

Devices with a communication fault get their own MQTT connection with a Last
Will (``offline``, retained) on their status topic; when their link drops the
connection is cut without DISCONNECT, so the broker itself announces them
offline, exactly as it would for a field device. Everything else shares one
connection.

With an account (``login``: a municipality's gateway, whose client id the broker
binds to its user name) there is one connection only, as for a field gateway:
when a device's link drops, the gateway announces it ``offline`` (retained) on
the device's status topic itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from simulators.clock import SimClock
from simulators.engine import Publication
from simulators.publisher import Publisher, Will, connect

Progress = Callable[[float, int], None]
FLUSH_EVERY_S = 1.0
"""Longest a publication waits in a connection's buffer (well inside the 60 s keep-alive)."""


@dataclass
class PublishReport:
    publications: int
    """messages published (a dropped link publishes nothing itself: the broker sends its Will)"""
    seconds: float
    last_sim_time: float
    wall_start: float = 0.0
    """wall-clock epoch at which simulated time started (maps receive times back to simulated time)"""


async def publish(
    host: str,
    port: int,
    publications: Iterable[Publication],
    clock: SimClock,
    *,
    own_links: set[str],
    client_id: str = "lykta-simulator",
    progress: Progress | None = None,
    progress_every_s: float = 1.0,
    login: tuple[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> PublishReport:
    """Publish paced by ``clock``; ``login`` is an account allowed to publish for every device published
    (a gateway account when the broker checks accounts), ``tls`` a context for mqtts://."""
    began = time.monotonic()
    if login is not None:
        client_id = login[0]  # the broker binds a gateway's client id to its account
    shared = await connect(host, port, client_id, login=login, tls=tls)
    links: dict[str, Publisher] = {}
    count = 0
    last_t = clock.start
    last_progress = last_flush = began
    clock.begin()
    wall_start = time.time()
    try:
        for pub in publications:
            wait = clock.delay(pub.t)
            if wait > 0.005 or time.monotonic() - last_flush >= FLUSH_EVERY_S:
                # what is buffered goes out at least every second even while publishing runs behind its clock: a
                # device's own link otherwise holds its few messages until the broker ends it for silence
                await shared.flush()
                for link in links.values():
                    await link.flush()
                last_flush = time.monotonic()
            if wait > 0.005:
                await asyncio.sleep(wait)
            last_t = pub.t
            target = shared
            if pub.device_id in own_links and login is not None:
                if pub.action == "drop":  # the gateway notices the device is gone and says so
                    status = pub.topic.rsplit("/", 1)[0] + "/status"
                    await shared.publish(status, b"offline", 1, retain=True)
                    count += 1
                    continue
            elif pub.device_id in own_links:
                if pub.action == "drop":
                    dropped = links.pop(pub.device_id, None)
                    if dropped is not None:
                        await dropped.settle()
                        dropped.abort()
                    continue
                existing = links.get(pub.device_id)
                if existing is not None:
                    link = existing
                else:
                    will = Will(pub.topic.rsplit("/", 1)[0] + "/status", b"offline", 1, True)
                    link = links[pub.device_id] = await connect(
                        host, port, f"{client_id}-{pub.device_id}", window=1000, will=will, login=login, tls=tls
                    )
                target = link
            elif pub.action == "drop":
                continue
            await target.publish(pub.topic, pub.payload, 1, retain=pub.retain)
            count += 1
            now = time.monotonic()
            if progress is not None and now - last_progress >= progress_every_s:
                last_progress = now
                progress(pub.t, count)
        await shared.settle()
        for link in links.values():
            await link.settle()
    finally:
        for link in [*links.values(), shared]:
            with contextlib.suppress(Exception):
                await link.close()
    if progress is not None:
        progress(last_t, count)
    return PublishReport(
        wall_start=wall_start, publications=count, seconds=time.monotonic() - began, last_sim_time=last_t
    )

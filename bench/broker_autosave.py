"""What the broker's autosave costs: publishing throughput with ``autosave_interval`` N against a broker that
does not save during the run (the baseline, ``autosave_interval 3600``), measured in the same run.

A save writes every session and every queued message to disk and blocks the broker meanwhile, so its cost grows
with what the broker holds. The run therefore queues Q messages for an offline persistent session first (0 for
a broker whose subscribers keep up; a million for one holding an outage's worth), then publishes as fast as one
QoS 1 publisher can for some seconds, every message also queued for that session, and counts acknowledgements.
It also reports the longest time without any acknowledgement: a save stalls the broker for that long.

    .venv/bin/python bench/broker_autosave.py --autosave 10 --queued 0 1000000 --seconds 30

Prints one table and exits 0; it asserts nothing about speed (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lykta import mosquitto
from simulators.publisher import Publisher, connection

PAYLOAD = (
    b'{"ts": 1764590400.0, "metrics": {"power_w": 41.0, "voltage_v": 230.0, "current_a": 0.18, '
    b'"power_factor": 0.95, "dim_level_pct": 100, "lamp_on": 1}}'
)


def _offline_session(port: int) -> None:
    """A persistent session subscribed to everything lykta publishes, then gone: the broker queues for it."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="away", protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 86_400
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    info = client.subscribe("lykta/#", qos=1)
    deadline = time.monotonic() + 10
    while client.is_connected() is False or info[0] != 0:
        if time.monotonic() > deadline:
            raise SystemExit("the subscription was not made")
        time.sleep(0.01)
    time.sleep(0.3)
    client.disconnect()
    client.loop_stop()


async def _publish(port: int, *, count: int | None, seconds: float | None) -> tuple[int, float, float]:
    """Publish ``count`` messages, or as many as fit in ``seconds``; returns (acknowledged, elapsed, longest
    stall): the longest time without a single acknowledgement while messages were outstanding, which is how
    long a save held the broker up."""
    began = time.monotonic()
    sent = 0
    async with connection("127.0.0.1", port, f"bench-{os.getpid()}-{began}", window=1000) as pub:
        done = asyncio.Event()
        watcher = asyncio.create_task(_longest_stall(pub, done))
        while (count is None or sent < count) and (seconds is None or time.monotonic() - began < seconds):
            for _ in range(500):
                await pub.publish(f"lykta/bench/streetlight_controller/SLC-{sent % 244 + 1:04d}/telemetry", PAYLOAD)
                sent += 1
        await pub.settle()
        done.set()
        stall = await watcher
        acked = pub.acked
    return acked, time.monotonic() - began, stall


async def _longest_stall(pub: Publisher, done: asyncio.Event) -> float:
    last, since, longest = pub.acked, time.monotonic(), 0.0
    while not done.is_set():
        await asyncio.sleep(0.005)
        now = time.monotonic()
        if pub.acked != last:
            last, since = pub.acked, now
        else:
            longest = max(longest, now - since)
    return longest


def _watch_saves(db: Path, saves: set[int], done: threading.Event) -> None:
    """Each save replaces the persistence file: count the new files seen (by inode) during the run."""
    try:
        before: int | None = db.stat().st_ino
    except FileNotFoundError:
        before = None
    while not done.wait(0.02):
        try:
            inode = db.stat().st_ino
        except FileNotFoundError:
            continue
        if inode != before:
            saves.add(inode)


def run_one(autosave: int, queued: int, seconds: float) -> tuple[float, int, float]:
    """Messages per second acknowledged, how many saves happened during the run, and the longest stall."""
    state = Path(tempfile.mkdtemp(prefix="lykta-autosave-"))
    state.chmod(0o755)
    info = mosquitto.start(state, None, autosave_s=autosave)
    try:
        _offline_session(info.port)
        if queued:
            asyncio.run(_publish(info.port, count=queued, seconds=None))
        saves: set[int] = set()
        done = threading.Event()
        watcher = threading.Thread(target=_watch_saves, args=(state / "mosquitto" / "mosquitto.db", saves, done))
        watcher.start()
        try:
            acked, elapsed, stall = asyncio.run(_publish(info.port, count=None, seconds=seconds))
        finally:
            done.set()
            watcher.join()
        return acked / elapsed, len(saves), stall
    finally:
        os.kill(info.pid, signal.SIGKILL)  # no final save of a million messages: it is not part of the measure
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--autosave", type=int, default=mosquitto.AUTOSAVE_SECONDS, help="seconds between saves")
    parser.add_argument("--queued", type=int, nargs="+", default=[0, 1_000_000])
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    print(
        f"{'queued before':>14} {'baseline (no save) msg/s':>25} {'longest stall':>14} "
        f"{f'autosave {args.autosave} s msg/s':>22} {'saves':>6} {'longest stall':>14} {'ratio':>6}"
    )
    for queued in args.queued:
        base, _, base_stall = run_one(3600, queued, args.seconds)
        rate, saves, stall = run_one(args.autosave, queued, args.seconds)
        print(
            f"{queued:>14,} {base:>25,.0f} {base_stall * 1000:>11,.0f} ms {rate:>22,.0f} {saves:>6} "
            f"{stall * 1000:>11,.0f} ms {rate / base:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Simulator benchmark: the week scenario on the sample inventory, published to a local broker as fast as possible.

Target: a 7-day scenario with every fault type runs in under two minutes of wall time.
Baseline in the same run: the same publications sent with paho-mqtt (QoS 1, one client on its network thread).

    .venv/bin/python bench/simulate.py
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lykta import mosquitto  # noqa: E402
from simulators import fleet as fleets  # noqa: E402
from simulators import scenario as scenarios  # noqa: E402
from simulators.clock import SimClock  # noqa: E402
from simulators.engine import ground_truth, simulate  # noqa: E402
from simulators.publish import publish  # noqa: E402


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lykta-bench-sim-"))
    tmp.chmod(0o755)
    broker = mosquitto.start(tmp, None)
    try:
        fleet = fleets.from_file(ROOT / "examples" / "solvik.geojson", "solvik", 7)
        plan = scenarios.load(ROOT / "examples" / "scenario-week.yaml", fleet.assets, fleet.children)
        began = time.monotonic()
        pubs = list(simulate(fleet, plan))
        generate_s = time.monotonic() - began

        fleet = fleets.from_file(ROOT / "examples" / "solvik.geojson", "solvik", 7)
        own = {t.device_id for t in ground_truth(fleet, plan) if t.fault == "communicationFailure"}
        began = time.monotonic()
        report = asyncio.run(
            publish("127.0.0.1", broker.port, simulate(fleet, plan), SimClock(plan.start), own_links=own)
        )
        total_s = time.monotonic() - began

        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho", protocol=paho.MQTTv5)
        client.max_inflight_messages_set(1000)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        began = time.monotonic()
        last = None
        for n, p in enumerate(pubs):
            if p.action != "drop":
                last = client.publish(p.topic, p.payload, qos=1, retain=p.retain)
            if n % 20_000 == 0 and last is not None:
                last.wait_for_publish(120)  # paho cannot queue more than 65,535 unacknowledged messages
        if last is not None:
            last.wait_for_publish(300)
        paho_s = time.monotonic() - began
        client.disconnect()
        client.loop_stop()
    finally:
        mosquitto.stop(broker)
        shutil.rmtree(tmp, ignore_errors=True)
    days = plan.duration / 86400
    print(
        f"\nlykta simulate benchmark: {days:g}-day scenario, {len(fleet.devices)} devices, {len(plan.faults)} faults\n"
    )
    print(f"generating the publications alone         {len(pubs):,} in {generate_s:.1f} s")
    print(
        f"lykta simulate --asap, generate + publish  {report.publications:,} in {total_s:.1f} s "
        f"({report.publications / total_s:,.0f}/s)   target: < 120 s"
    )
    print(f"baseline: same publications with paho-mqtt {len(pubs):,} in {paho_s:.1f} s ({len(pubs) / paho_s:,.0f}/s)")
    print(f"ratio (paho time / lykta time)             {paho_s / total_s:.1f}x")


if __name__ == "__main__":
    main()

"""Publishing a simulation through a real Mosquitto: what a device's own link sends reaches the broker while
publishing runs behind its clock (a benchmark at a week in five minutes on a busy machine)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from simulators.clock import SimClock
from simulators.engine import Publication
from simulators.publish import publish
from tests.helpers import wait_for


def test_a_device_link_is_heard_while_publishing_runs_behind(broker: str) -> None:
    """SLC-0009 has its own link (it will lose it later); the simulation, busy, publishes as fast as it can for
    five seconds after SLC-0009's reading. The broker hears that reading within those seconds (its link used
    to keep it buffered until publishing paused, and Mosquitto ended the link for a minute and a half of
    silence: the quality benchmark failed on it)."""
    port = int(broker.rsplit(":", 1)[1])
    got: list[str] = []
    lock = threading.Lock()
    subscribed = threading.Event()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="watcher", protocol=paho.MQTTv5)

    def on_message(_c: object, _u: object, message: paho.MQTTMessage) -> None:
        with lock:
            got.append(message.topic)

    sub.on_message = on_message
    sub.on_subscribe = lambda *_args: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    try:
        sub.subscribe("lykta/#", qos=1)
        wait_for(subscribed.is_set, 30, "the subscription")
        heard_in_time: list[bool] = []

        def field() -> Iterator[Publication]:
            yield Publication(0.0, "SLC-0009", "lykta/solvik/streetlight/SLC-0009/telemetry", b'{"ts": 0}')
            began = time.monotonic()
            n = 0
            while time.monotonic() - began < 5.0:
                time.sleep(0.01)  # computing the next reading
                n += 1
                yield Publication(float(n), "SLC-0001", "lykta/solvik/streetlight/SLC-0001/telemetry", b"{}")
            with lock:
                heard_in_time.append("lykta/solvik/streetlight/SLC-0009/telemetry" in got)

        asyncio.run(publish("127.0.0.1", port, field(), SimClock(0.0), own_links={"SLC-0009"}))
        assert heard_in_time == [True]
        wait_for(lambda: got.count("lykta/solvik/streetlight/SLC-0001/telemetry") > 100, 30, "the shared link")
    finally:
        sub.loop_stop()
        sub.disconnect()

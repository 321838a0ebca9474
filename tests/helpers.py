"""Helpers for tests that talk to the real broker and run ingest."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from floor.config import Settings
from ingest.service import Ingest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STREETLIGHT = "lykta/solvik/streetlight_controller/{}/telemetry"


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def reading(i: int, base: float, devices: int = 244) -> tuple[str, bytes]:
    """Message number i: a streetlight reading with six metrics, device time base + i seconds."""
    device = f"SLC-{i % devices + 1:04d}"
    payload = {
        "ts": base + i,
        "metrics": {
            "power_w": 40.0 + i % 7,
            "voltage_v": 230.0,
            "current_a": 0.18,
            "power_factor": 0.95,
            "dim_level_pct": 100,
            "lamp_on": 1,
        },
    }
    return STREETLIGHT.format(device), orjson.dumps(payload)


class Publisher:
    """A QoS 1 publisher on its own network thread."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, messages: Iterable[tuple[str, bytes]], qos: int = 1, rate: float | None = None) -> int:
        infos = []
        started = time.monotonic()
        for n, (topic, payload) in enumerate(messages, start=1):
            infos.append(self.client.publish(topic, payload, qos=qos))
            if rate:
                ahead = n / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        for info in infos:
            info.wait_for_publish(timeout=60)
        return len(infos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class RunningIngest:
    """lykta's ingest service in a thread of this process, on its own event loop."""

    def __init__(self, settings: Settings, database_url: str, mqtt_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        self.mqtt_url = mqtt_url
        self.service: Ingest | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self.service = Ingest(self.settings, self.database_url, self.mqtt_url)
            task = asyncio.create_task(self.service.run())
            waiter = asyncio.create_task(self.service.connected.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            self._ready.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test by stop()
            self._error = exc
            self._ready.set()

    def __enter__(self) -> RunningIngest:
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError("ingest did not connect within 30 s")
        if self._error:
            raise self._error
        return self

    def received(self) -> float:
        if self.service is None:
            return 0.0
        value = self.service.stats.registry.get_sample_value("lykta_ingest_messages_received_total")
        return value or 0.0

    def stop(self) -> None:
        if self._loop is not None and self.service is not None:
            self._loop.call_soon_threadsafe(self.service.stopping.set)
        self._thread.join(60)
        if self._thread.is_alive():
            raise AssertionError("ingest did not stop within 60 s of being asked")
        if self._error:
            raise self._error

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ingest_settings(**changes: object) -> Settings:
    base = Settings(
        ingest_metrics_port=0,
        ingest_batch_messages=500,
        ingest_batch_age_ms=50,
        ingest_stats_interval_s=1,
        ingest_client_id="test-ingest",
        state_dir=Path("/nonexistent/lykta-test-state"),  # no local broker account is picked up
    )
    return replace(base, **changes)  # type: ignore[arg-type]


class Inbox:
    """What a mail server received: each message's recipients, its raw data, and its subject and text as a
    reader's mail program shows them (headers and transfer encodings decoded)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        import email
        import email.policy

        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = parsed.get_body(("plain",)) if hasattr(parsed, "get_body") else None
        text = body.get_content() if body is not None else ""
        self.messages.append(
            {
                "to": envelope.rcpt_tos,
                "data": envelope.content.decode(),
                "subject": str(parsed["Subject"]),
                "text": text,
            }
        )
        return "250 OK"


class Receiver:
    """A webhook endpoint: records each request; answers with the next status in ``answers`` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def served(app: Any) -> Iterator[str]:
    """An ASGI application served by uvicorn on a free loopback port in a thread; its base address."""
    import uvicorn

    from lykta.process import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the application did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)

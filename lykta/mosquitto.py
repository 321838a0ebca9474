"""A private Mosquitto broker on a free loopback port, with its persistence under the state directory.

Queue limits are chosen so that a subscriber that falls behind or is down loses
nothing within the limits below (Mosquitto's default ``max_queued_messages`` of
1000 silently drops the rest of a burst); docs/operations.md explains them.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lykta.errors import NotInstalledError, ServiceError
from lykta.process import Account, accepts_connections, cmdline, free_port, is_alive, stop_pid

# Messages queued per client session while it is offline or slow (QoS 1 and 2).
MAX_QUEUED_MESSAGES = 5_000_000
# Unacknowledged QoS 1 messages in flight per client: lets a batching consumer hold a batch before acking.
MAX_INFLIGHT_MESSAGES = 20_000
# Largest MQTT packet the broker accepts; the telemetry contract's payload limit is lower on purpose,
# so an oversized payload reaches ingest and is dead-lettered with a reason instead of vanishing.
MAX_PACKET_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class MqttInfo:
    """Where the private broker runs; recorded in services.json."""

    host: str
    port: int
    pid: int
    config: str

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MqttInfo:
        return cls(**data)


def find_binary() -> Path:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/bin")
    if not found:
        raise NotInstalledError("mosquitto is not installed; run ./bootstrap setup")
    return Path(found)


def render_config(port: int, root: Path) -> str:
    return "\n".join(
        [
            "# written by lykta services up; changes are overwritten",
            "per_listener_settings false",
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {root}/",
            "autosave_interval 60",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            "max_queued_bytes 0",
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
            f"max_packet_size {MAX_PACKET_SIZE}",
            "persistent_client_expiration 14d",
            f"log_dest file {root}/mosquitto.log",
            f"pid_file {root}/mosquitto.pid",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "",
        ]
    )


def start(state_dir: Path, previous: MqttInfo | None) -> MqttInfo:
    binary = find_binary()
    root = (state_dir / "mosquitto").resolve()
    root.mkdir(parents=True, exist_ok=True)
    account = Account.for_service("mosquitto")
    if previous and running(previous):
        return previous
    port = free_port(previous.port if previous else None)
    conf = root / "mosquitto.conf"
    conf.write_text(render_config(port, root))
    if account:
        account.check_can_reach(root)
        account.own(root)
    kwargs: dict[str, Any] = {}
    if account:
        kwargs.update(user=account.uid, group=account.gid, extra_groups=[])
    pid_file = root / "mosquitto.pid"
    pid_file.unlink(missing_ok=True)
    # -d: mosquitto daemonises itself and writes pid_file, so it is nobody's child and outlives this command.
    proc = subprocess.run([str(binary), "-c", str(conf), "-d"], capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise ServiceError(
            f"mosquitto exited with {proc.returncode}: {(proc.stderr or proc.stdout).strip()} {_tail(root)}"
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pid = int(pid_file.read_text().strip() or 0) if pid_file.exists() else 0
        if pid and not is_alive(pid):
            raise ServiceError(f"mosquitto exited after starting: {_tail(root)}")
        if pid and accepts_connections(port):
            return MqttInfo(host="127.0.0.1", port=port, pid=pid, config=str(conf))
        time.sleep(0.05)
    raise ServiceError(f"mosquitto did not accept connections on port {port} within 15 s: {_tail(root)}")


def _tail(root: Path) -> str:
    text = ""
    for name in ("mosquitto.log", "stdout.log"):
        path = root / name
        if path.exists():
            text += path.read_text(errors="replace")[-800:]
    return text.strip() or "(no log output)"


def running(info: MqttInfo) -> bool:
    argv = cmdline(info.pid)
    return is_alive(info.pid) and bool(argv) and Path(argv[0]).name == "mosquitto" and info.config in argv


def stop(info: MqttInfo) -> bool:
    """Stop by the recorded pid (SIGTERM saves the persistence file); False if it was not running."""
    if not running(info):
        return False
    return stop_pid(info.pid, signal.SIGTERM, timeout=30)

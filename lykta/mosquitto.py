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

from floor.errors import NotInstalledError, ServiceError
from lykta.broker_accounts import DYNSEC_FILE, admin_login, write_broker_file
from lykta.process import Account, accepts_connections, cmdline, free_port, is_alive, port_is_free, stop_pid

# Messages queued per client session while it is offline or slow (QoS 1 and 2).
MAX_QUEUED_MESSAGES = 5_000_000
# Unacknowledged QoS 1 messages in flight per client: lets a batching consumer hold a batch before acking.
MAX_INFLIGHT_MESSAGES = 20_000
# Largest MQTT packet the broker accepts; the telemetry contract's payload limit is lower on purpose,
# so an oversized payload reaches ingest and is dead-lettered with a reason instead of vanishing.
MAX_PACKET_SIZE = 4 * 1024 * 1024
# Seconds between saves of the broker's sessions and queues: what a crash (kill -9, power) can lose of the messages
# ingest had not committed yet. A save blocks the broker for a time that grows with its queues (measured: 0.15 s
# for 100,000 queued readings, 0.7 s for a million; docs/ingest.md).
AUTOSAVE_SECONDS = 10


@dataclass(frozen=True)
class MqttInfo:
    """Where the private broker runs; recorded in services.json."""

    host: str
    port: int
    pid: int
    config: str
    tls: bool = False

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MqttInfo:
        return cls(**data)


def find_dynsec_plugin() -> Path:
    """Mosquitto's dynamic-security plugin, which Debian's package ships beside the broker."""
    for pattern in ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so"):
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        if found:
            return found[0]
    raise NotInstalledError("mosquitto's dynamic-security plugin is not installed; run ./bootstrap setup")


def find_binary() -> Path:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/bin")
    if not found:
        raise NotInstalledError("mosquitto is not installed; run ./bootstrap setup")
    return Path(found)


@dataclass(frozen=True)
class BrokerSecurity:
    """How the private broker guards itself (docs/security.md)."""

    authenticate: bool = False
    """refuse anonymous clients; accounts, client ids and topics from the dynamic-security file lykta writes"""
    tls_cert: Path | None = None
    """serve MQTT over TLS with this certificate chain (PEM) ..."""
    tls_key: Path | None = None
    """... and this private key (PEM); both are copied into the broker's directory"""

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def render_config(
    port: int, root: Path, security: BrokerSecurity | None = None, autosave_s: int = AUTOSAVE_SECONDS
) -> str:
    security = security or BrokerSecurity()
    listener = [f"listener {port} 127.0.0.1"]
    if security.tls:
        listener += [f"certfile {root}/tls/cert.pem", f"keyfile {root}/tls/key.pem", "tls_version tlsv1.2"]
    if security.authenticate:
        access = [
            "allow_anonymous false",
            f"plugin {find_dynsec_plugin()}",
            f"plugin_opt_config_file {root}/{DYNSEC_FILE}",
        ]
    else:
        access = ["allow_anonymous true"]
    return "\n".join(
        [
            "# written by lykta services up; changes are overwritten",
            "per_listener_settings false",
            *listener,
            *access,
            "persistence true",
            f"persistence_location {root}/",
            f"autosave_interval {autosave_s}",
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


def start(
    state_dir: Path,
    previous: MqttInfo | None,
    security: BrokerSecurity | None = None,
    *,
    autosave_s: int = AUTOSAVE_SECONDS,
) -> MqttInfo:
    """Start the broker, or keep the running one when its configuration is unchanged (restart it otherwise)."""
    binary = find_binary()
    root = (state_dir / "mosquitto").resolve()
    root.mkdir(parents=True, exist_ok=True)
    account = Account.for_service("mosquitto")
    conf = root / "mosquitto.conf"
    if previous and running(previous):
        current = conf.read_text() if conf.exists() else ""
        if current == render_config(previous.port, root, security, autosave_s) and not _new_certificate(root, security):
            return previous
        stop(previous)
    if previous is not None:
        # After a crash the old port is held for a moment by the dead broker's closing connections; clients
        # (a running ingest among them) know that port, so wait for it rather than move.
        deadline = time.monotonic() + 10
        while not port_is_free(previous.port) and time.monotonic() < deadline:
            time.sleep(0.1)
    port = free_port(previous.port if previous else None)
    _install_security(root, security)
    conf.write_text(render_config(port, root, security, autosave_s))
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
            return MqttInfo(host="127.0.0.1", port=port, pid=pid, config=str(conf), tls=bool(security and security.tls))
        time.sleep(0.05)
    raise ServiceError(f"mosquitto did not accept connections on port {port} within 15 s: {_tail(root)}")


def _install_security(root: Path, security: BrokerSecurity | None) -> None:
    """Copy the certificate and key where the broker's account can read them; make sure the dynamic-security
    file exists (one with only lykta's broker administrator lets no device in until accounts are provisioned)."""
    if security is None:
        return
    if security.tls_cert is not None:
        if security.tls_key is None:
            raise ServiceError("mqtt_tls_cert_file is set without mqtt_tls_key_file")
        tls = root / "tls"
        tls.mkdir(mode=0o700, exist_ok=True)
        for source, name in ((security.tls_cert, "cert.pem"), (security.tls_key, "key.pem")):
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise ServiceError(f"cannot read the broker's TLS file {source}: {exc.strerror}") from None
            target = tls / name
            target.touch(mode=0o600)
            target.write_bytes(data)
    if security.authenticate and not (root / DYNSEC_FILE).exists():
        write_broker_file([], root, admin_login(root.parent, create=True))


def _new_certificate(root: Path, security: BrokerSecurity | None) -> bool:
    if security is None or security.tls_cert is None:
        return False
    try:
        return security.tls_cert.read_bytes() != (root / "tls" / "cert.pem").read_bytes()
    except OSError:
        return True


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


def authenticates(info: MqttInfo) -> bool:
    """Whether the broker was started with accounts (the dynamic-security plugin), not for anonymous use."""
    try:
        return "plugin_opt_config_file" in Path(info.config).read_text()
    except OSError:
        return False


def stop(info: MqttInfo) -> bool:
    """Stop by the recorded pid (SIGTERM saves the persistence file); False if it was not running."""
    if not running(info):
        return False
    return stop_pid(info.pid, signal.SIGTERM, timeout=30)

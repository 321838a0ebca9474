"""A highly available PostgreSQL on this machine, from Debian's packages: three etcd members and three
PostgreSQL members (TimescaleDB preloaded) under Patroni, in synchronous mode, on free loopback ports with
their data under ``<state dir>/ha/``. lykta does not manage the cluster: Patroni does (leader election,
failover, switchover, replicas following the new primary); this module writes its configuration, starts
and stops the processes, and says where they are.

The same configuration for three machines is in docs/operations.md.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import yaml

from floor.errors import NotInstalledError, ServiceError
from lykta.postgres import DATABASE, SUPERUSER, find_bindir
from lykta.process import Account, free_port, is_alive, stop_pid
from storage import cluster as cluster_store

SCOPE = "lykta"
REPLICATOR = "replicator"
MEMBERS = 3
TIMING = {"ttl": 10, "loop_wait": 2, "retry_timeout": 4}
"""Patroni's timing: a leader that stops renewing its key is replaced after at most ``ttl`` seconds
(``loop_wait`` + 2 x ``retry_timeout`` <= ``ttl``)."""


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    pid: int = 0


@dataclass
class PgMember:
    name: str
    pg_port: int
    rest_port: int
    pid: int = 0
    """Patroni's process"""


@dataclass
class HaCluster:
    """Where the cluster runs; recorded in ``<state dir>/ha/cluster.json``."""

    root: str
    password: str
    replication_password: str
    synchronous: bool
    etcd: list[EtcdMember] = field(default_factory=list)
    members: list[PgMember] = field(default_factory=list)

    def url(self, attrs: str = "read-write", database: str = DATABASE) -> str:
        """A multi-host connection string: every member, the session kind asked for (``read-write`` follows
        the primary, ``prefer-standby`` reads a replica when one is up)."""
        hosts = ",".join(f"127.0.0.1:{m.pg_port}" for m in self.members)
        return (
            f"postgresql://{SUPERUSER}:{quote(self.password, safe='')}@{hosts}/{database}"
            f"?target_session_attrs={attrs}&sslmode=disable&connect_timeout=3"
        )

    def member_url(self, member: PgMember, database: str = DATABASE) -> str:
        return (
            f"postgresql://{SUPERUSER}:{quote(self.password, safe='')}@127.0.0.1:{member.pg_port}/{database}"
            "?sslmode=disable&connect_timeout=3"
        )

    def data_dir(self, member: PgMember) -> Path:
        return Path(self.root) / member.name / "data"

    def save(self) -> None:
        path = Path(self.root) / "cluster.json"
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)

    @classmethod
    def load(cls, root: Path) -> HaCluster | None:
        try:
            doc = json.loads((root / "cluster.json").read_text())
        except (OSError, ValueError):
            return None
        doc["etcd"] = [EtcdMember(**e) for e in doc["etcd"]]
        doc["members"] = [PgMember(**m) for m in doc["members"]]
        return cls(**doc)


def _binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise NotInstalledError(f"{name} is not installed; ./bootstrap setup installs patroni and etcd-server")
    return found


def _detached(argv: list[str], log: Path, pidfile: Path, **kwargs: Any) -> int:
    """Start ``argv`` in a session of its own, nobody's child (it outlives this command and is never left a
    zombie), writing to ``log``; its pid."""
    pidfile.unlink(missing_ok=True)
    with log.open("ab") as out:
        subprocess.run(
            [_binary("setsid"), "-f", "sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pidfile), *argv],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL, check=True, **kwargs,
        )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        if text.isdigit():
            return int(text)
        time.sleep(0.02)
    raise ServiceError(f"{argv[0]} did not start (log: {log})")


def _etcd_hosts(cluster: HaCluster) -> str:
    return ",".join(f"127.0.0.1:{e.client_port}" for e in cluster.etcd)


def _start_etcd(cluster: HaCluster, member: EtcdMember) -> int:
    root = Path(cluster.root) / "etcd" / member.name
    root.mkdir(parents=True, exist_ok=True)
    peers = ",".join(f"{e.name}=http://127.0.0.1:{e.peer_port}" for e in cluster.etcd)
    fresh = not (root / "data").exists()
    argv = [
        _binary("etcd"), "--name", member.name, "--data-dir", str(root / "data"),
        "--listen-client-urls", f"http://127.0.0.1:{member.client_port}",
        "--advertise-client-urls", f"http://127.0.0.1:{member.client_port}",
        "--listen-peer-urls", f"http://127.0.0.1:{member.peer_port}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{member.peer_port}",
        "--initial-cluster", peers, "--initial-cluster-state", "new" if fresh else "existing",
        "--initial-cluster-token", f"lykta-{Path(cluster.root).name}",
        "--heartbeat-interval", "100", "--election-timeout", "1000", "--log-level", "warn",
    ]  # fmt: skip
    return _detached(argv, root / "etcd.log", root / "etcd.pid")


def _patroni_config(cluster: HaCluster, member: PgMember, bindir: Path, ephemeral: bool) -> dict[str, Any]:
    root = Path(cluster.root) / member.name
    parameters: dict[str, Any] = {
        "shared_preload_libraries": "timescaledb",
        "timescaledb.telemetry_level": "off",
        "max_connections": 200,
        "shared_buffers": "256MB",
        "work_mem": "32MB",
        "max_wal_size": "2GB",
        "wal_level": "replica",
        "hot_standby": "on",
        "max_wal_senders": 10,
        "max_replication_slots": 10,
        "wal_log_hints": "on",
        "wal_keep_size": "512MB",
        "timezone": "UTC",
        "log_timezone": "UTC",
        "archive_mode": "on",
        "archive_command": "/bin/true",  # until backups are set up (lykta/backup.py points it at pgBackRest)
    }
    if ephemeral:
        parameters["fsync"] = "off"
    return {
        "scope": SCOPE,
        "namespace": "/lykta/",
        "name": member.name,
        "log": {"level": "WARNING", "dir": str(root), "file_num": 2, "file_size": 10_000_000},
        "restapi": {"listen": f"127.0.0.1:{member.rest_port}", "connect_address": f"127.0.0.1:{member.rest_port}"},
        "etcd3": {"hosts": _etcd_hosts(cluster)},
        "bootstrap": {
            "dcs": {
                **TIMING,
                "maximum_lag_on_failover": 16 * 1024 * 1024,
                "synchronous_mode": cluster.synchronous,
                "synchronous_node_count": 1,
                "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": parameters},
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            "pg_hba": [
                f"host replication {REPLICATOR} 127.0.0.1/32 scram-sha-256",
                "host all all 127.0.0.1/32 scram-sha-256",
                "local all all peer",
            ],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{member.pg_port}",
            "connect_address": f"127.0.0.1:{member.pg_port}",
            "data_dir": str(root / "data"),
            "bin_dir": str(bindir),
            "pgpass": str(root / "pgpass"),
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": cluster.password},
                "replication": {"username": REPLICATOR, "password": cluster.replication_password},
                "rewind": {"username": SUPERUSER, "password": cluster.password},
            },
            "parameters": {"unix_socket_directories": str(root), "unix_socket_permissions": "0700"},
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def _start_patroni(cluster: HaCluster, member: PgMember, bindir: Path, ephemeral: bool) -> int:
    root = Path(cluster.root) / member.name
    root.mkdir(parents=True, exist_ok=True)
    config = root / "patroni.yml"
    config.write_text(yaml.safe_dump(_patroni_config(cluster, member, bindir, ephemeral), sort_keys=False))
    config.chmod(0o600)
    account = Account.for_service("postgres")
    kwargs: dict[str, Any] = {}
    if account:
        account.check_can_reach(root)
        account.own(root)
        kwargs.update(user=account.uid, group=account.gid, extra_groups=[])
    return _detached([_binary("patroni"), str(config)], root / "patroni.out", root / "patroni.pid", cwd=root, **kwargs)


def rest(member: PgMember, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Patroni's REST API of a member: (status, answer), status 0 when it does not answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{member.rest_port}{path}", data=data, method=method,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=3) as answer:  # noqa: S310
            raw = answer.read()
            return answer.status, json.loads(raw) if raw.strip().startswith(b"{") else raw.decode()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.strip().startswith(b"{") else raw.decode()
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def leader(cluster: HaCluster) -> PgMember | None:
    """The member that is the primary now (Patroni's ``/primary`` answers 200 there only)."""
    for m in cluster.members:
        if rest(m, "/primary")[0] == 200:
            return m
    return None


def roles(cluster: HaCluster) -> dict[str, str]:
    """Each member's role as Patroni reports it (primary, replica, sync_standby, ...; "down" when silent)."""
    status, answer = 0, None
    for m in cluster.members:
        status, answer = rest(m, "/cluster")
        if status == 200 and isinstance(answer, dict):
            break
    found = {m.name: "down" for m in cluster.members}
    if status == 200 and isinstance(answer, dict):
        for m in answer.get("members", []):
            role = m.get("role", "?")
            if m.get("state") not in ("running", "streaming"):
                role = f"{role} ({m.get('state')})"
            found[m["name"]] = role
    return found


def wait_for(cluster: HaCluster, timeout: float = 180.0, replicas: int = MEMBERS - 1) -> PgMember:
    """The primary, once it is up with ``replicas`` replicas streaming (one of them synchronous in synchronous
    mode)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        seen = roles(cluster)
        primary = leader(cluster)
        streaming = [r for r in seen.values() if r in ("replica", "sync_standby")]
        synced = not cluster.synchronous or "sync_standby" in seen.values() or replicas == 0
        if primary is not None and len(streaming) >= replicas and synced:
            return primary
        time.sleep(0.5)
    logs = ", ".join(str(Path(cluster.root) / m.name / "patroni.out") for m in cluster.members)
    raise ServiceError(f"the Patroni cluster did not come up in {timeout:.0f} s (roles {seen}; logs: {logs})")


def up(state_dir: Path, *, synchronous: bool = True, ephemeral: bool = False) -> HaCluster:
    """Start (the first time: create) the cluster and wait until it has a primary and its replicas; the
    ``lykta`` database exists on it. Running members are left as they are."""
    root = (state_dir / "ha").resolve()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    cluster = HaCluster.load(root)
    if cluster is None:
        taken: set[int] = set()

        def port() -> int:
            while (p := free_port()) in taken:
                pass
            taken.add(p)
            return p

        cluster = HaCluster(
            root=str(root),
            password=secrets.token_urlsafe(24),
            replication_password=secrets.token_urlsafe(24),
            synchronous=synchronous,
            etcd=[EtcdMember(f"etcd{n}", port(), port()) for n in range(1, MEMBERS + 1)],
            members=[PgMember(f"pg{n}", port(), port()) for n in range(1, MEMBERS + 1)],
        )
    bindir = find_bindir()
    for e in cluster.etcd:
        if not (e.pid and is_alive(e.pid)):
            e.pid = _start_etcd(cluster, e)
    cluster.save()
    for m in cluster.members:
        if not (m.pid and is_alive(m.pid)):
            m.pid = _start_patroni(cluster, m, bindir, ephemeral)
    cluster.save()
    wait_for(cluster)
    with psycopg.connect(cluster.url(database="postgres"), autocommit=True) as conn:
        cluster_store.ensure_database(conn, DATABASE)
    return cluster


def start_member(cluster: HaCluster, member: PgMember, *, ephemeral: bool = False) -> None:
    """Start a member's Patroni again (after it was stopped or killed); it rejoins as a replica."""
    member.pid = _start_patroni(cluster, member, find_bindir(), ephemeral)
    cluster.save()


def socket_dir(cluster: HaCluster, member: PgMember) -> Path:
    return Path(cluster.root) / member.name


def set_parameters(cluster: HaCluster, parameters: dict[str, str], timeout: float = 60.0) -> None:
    """Change PostgreSQL parameters on every member through Patroni's dynamic configuration (parameters that
    a reload applies), and wait until the primary runs with them."""
    primary = leader(cluster)
    if primary is None:
        raise ServiceError("no primary to change the configuration through")
    status, answer = rest(primary, "/config", "PATCH", {"postgresql": {"parameters": parameters}})
    if status != 200:
        raise ServiceError(f"Patroni refused the configuration change: {status} {answer}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(cluster.url(database="postgres"), autocommit=True) as conn:
            if all(cluster_store.setting(conn, name) == value for name, value in parameters.items()):
                return
        time.sleep(0.5)
    raise ServiceError(f"the primary did not take {sorted(parameters)} within {timeout:.0f} s")


def postmaster_pid(cluster: HaCluster, member: PgMember) -> int | None:
    try:
        first = (cluster.data_dir(member) / "postmaster.pid").read_text().split("\n", 1)[0]
    except OSError:
        return None
    return int(first) if first.strip().isdigit() else None


def down(state_dir: Path) -> list[str]:
    """Stop the cluster: Patroni (which stops its PostgreSQL), then etcd."""
    cluster = HaCluster.load((state_dir / "ha").resolve())
    if cluster is None:
        return ["ha: not set up"]
    lines = []
    for m in cluster.members:
        stopped = bool(m.pid) and is_alive(m.pid) and stop_pid(m.pid, signal.SIGTERM, timeout=60)
        pg = postmaster_pid(cluster, m)
        if pg and is_alive(pg):  # Patroni was killed: its PostgreSQL is still up
            stop_pid(pg, signal.SIGINT, timeout=60)
        lines.append(f"{m.name}: {'stopped' if stopped else 'not running'}")
        m.pid = 0
    for e in cluster.etcd:
        stopped = bool(e.pid) and is_alive(e.pid) and stop_pid(e.pid, signal.SIGTERM, timeout=30)
        lines.append(f"{e.name}: {'stopped' if stopped else 'not running'}")
        e.pid = 0
    cluster.save()
    return lines

"""A private PostgreSQL cluster with TimescaleDB preloaded, under the state directory."""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from floor.errors import NotInstalledError, ServiceError
from lykta.process import Account, cmdline, free_port, is_alive, stop_pid
from storage import cluster as cluster_store

SUPERUSER = "lykta"
DATABASE = "lykta"


@dataclass(frozen=True)
class PostgresInfo:
    """Where the private cluster runs; recorded in services.json."""

    host: str
    port: int
    user: str
    password: str
    database: str
    pid: int
    data_dir: str
    bindir: str

    def url(self, database: str | None = None) -> str:
        return (
            f"postgresql://{quote(self.user)}:{quote(self.password, safe='')}@{self.host}:{self.port}/"
            f"{quote(database or self.database)}?sslmode=disable"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PostgresInfo:
        return cls(**data)


def find_bindir() -> Path:
    """The newest PostgreSQL installation that has TimescaleDB."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    for postgres in candidates:
        lib = postgres.parent.parent / "lib"
        if any(lib.glob("timescaledb*.so")):
            return postgres.parent
    found = ", ".join(str(p.parent) for p in candidates) or "none"
    raise NotInstalledError(
        f"no PostgreSQL with TimescaleDB found (PostgreSQL installations: {found}); run ./bootstrap setup"
    )


def _run(argv: list[str], account: Account | None, what: str) -> None:
    kwargs: dict[str, Any] = {}
    if account:
        kwargs.update(user=account.uid, group=account.gid, extra_groups=[])
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise ServiceError(f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}")


def socket_dir(info: PostgresInfo) -> Path:
    """The cluster's Unix socket directory (only its service account may enter): for pgBackRest."""
    return Path(info.data_dir).parent


def config_text(port: int, root: Path, *, ephemeral: bool = False, archive: bool = True,
                extra: dict[str, str] | None = None) -> str:  # fmt: skip
    """lykta's settings of a local cluster whose data is under ``root``. WAL archiving is on, discarding until
    backups are set up (lykta/backup.py points ``archive_command`` at pgBackRest with ALTER SYSTEM)."""
    return _config(port, ephemeral, extra, root, archive)


def _config(
    port: int, ephemeral: bool, extra: dict[str, str] | None = None, root: Path | None = None, archive: bool = True
) -> str:
    lines = [
        "# written by lykta services up; changes are overwritten",
        "listen_addresses = '127.0.0.1'",
        f"port = {port}",
        f"unix_socket_directories = '{root}'" if root else "unix_socket_directories = ''",
        "unix_socket_permissions = 0700",
        f"archive_mode = {'on' if archive else 'off'}",
        "archive_command = '/bin/true'",
        "shared_preload_libraries = 'timescaledb'",
        "timescaledb.telemetry_level = 'off'",
        "max_connections = 200",
        "shared_buffers = '512MB'",
        "work_mem = '32MB'",
        "maintenance_work_mem = '256MB'",
        "max_wal_size = '4GB'",
        "timezone = 'UTC'",
        "log_timezone = 'UTC'",
        "log_min_messages = warning",
    ]
    if ephemeral:
        lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
    lines += [f"{key} = {value}" for key, value in (extra or {}).items()]
    return "\n".join(lines) + "\n"


def start(
    state_dir: Path, previous: PostgresInfo | None, *, ephemeral: bool = False, extra: dict[str, str] | None = None
) -> PostgresInfo:
    """Initialise (first time) and start the cluster; return where it runs."""
    bindir = find_bindir()
    root = state_dir / "postgres"
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    data = root / "data"
    account = Account.for_service("postgres")
    if account:
        account.check_can_reach(root)
        account.own(root)
    password = previous.password if previous else secrets.token_urlsafe(24)
    if previous and previous.pid and is_alive(previous.pid) and _is_our_postgres(previous.pid, data):
        return previous
    if not (data / "PG_VERSION").exists():
        pwfile = root / "initdb.pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if account:
            account.own(root)
        try:
            _run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    "--pwfile",
                    str(pwfile),
                    "--auth-host=scram-sha-256",
                    "--auth-local=peer",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
                account,
                "initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (data / "postgresql.conf").open("a") as fh:
            fh.write("\ninclude_if_exists = 'lykta.conf'\n")
    port = free_port(previous.port if previous else None)
    (data / "lykta.conf").write_text(_config(port, ephemeral, extra, root))
    if account:
        account.own(root)
    info = PostgresInfo(
        host="127.0.0.1",
        port=port,
        user=SUPERUSER,
        password=password,
        database=DATABASE,
        pid=0,
        data_dir=str(data),
        bindir=str(bindir),
    )
    info = start_existing(root, info)
    _ensure_database(info)
    return info


def start_existing(root: Path, info: PostgresInfo) -> PostgresInfo:
    """Start the cluster whose data is ``info.data_dir`` (logging to ``root/postgres.log``); where it runs."""
    data = Path(info.data_dir)
    try:
        _start(root, info, data)
    except ServiceError as exc:
        log = root / "postgres.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-8:] if log.exists() else []
        raise ServiceError(f"{exc}\n" + "\n".join(tail)) from None
    pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    return replace(info, pid=pid)


def _start(root: Path, info: PostgresInfo, data: Path) -> None:
    _run(
        [
            str(Path(info.bindir) / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "postgres.log"),
            "-w",
            "-t",
            "120",
            "start",
        ],
        Account.for_service("postgres"),
        f"starting PostgreSQL (log: {root / 'postgres.log'})",
    )


def _ensure_database(info: PostgresInfo) -> None:
    with psycopg.connect(info.url("postgres"), autocommit=True) as conn:
        cluster_store.ensure_database(conn, info.database)


def _is_our_postgres(pid: int, data: Path) -> bool:
    argv = cmdline(pid)
    return bool(argv) and Path(argv[0]).name.startswith("postgres") and _pidfile_pid(data) == pid


def _pidfile_pid(data: Path) -> int | None:
    try:
        first = (data / "postmaster.pid").read_text().split("\n", 1)[0]
    except OSError:
        return None
    return int(first) if re.fullmatch(r"\d+", first) else None


def stop(info: PostgresInfo) -> bool:
    """Fast shutdown by the recorded pid; False if it was not running."""
    data = Path(info.data_dir)
    if not is_alive(info.pid) or not _is_our_postgres(info.pid, data):
        return False
    return stop_pid(info.pid, signal.SIGINT, timeout=120)


def running(info: PostgresInfo) -> bool:
    return is_alive(info.pid) and _is_our_postgres(info.pid, Path(info.data_dir))

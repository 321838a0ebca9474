"""Backups that restore: pgBackRest (Debian's package) with continuous WAL archiving into a repository
directory (``<state dir>/backup``; S3-compatible storage in production, docs/operations.md), full and
incremental backups, and restores to a point in time into a fresh cluster (the drill).

lykta writes pgBackRest's configuration and runs it as the database's service account; the running cluster
archives every WAL segment through ``archive_command`` (set with ALTER SYSTEM, no restart: the cluster runs
with ``archive_mode = on`` and a command that discards until backups are set up).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg

from floor.errors import NotInstalledError, ServiceError
from lykta import postgres, services
from lykta.postgres import PostgresInfo
from lykta.process import Account, free_port

STANZA = "lykta"


def _pgbackrest() -> str:
    found = shutil.which("pgbackrest")
    if not found:
        raise NotInstalledError("pgbackrest is not installed; ./bootstrap setup installs it")
    return found


def config_path(state_dir: Path) -> Path:
    return state_dir.resolve() / "pgbackrest" / "pgbackrest.conf"


def _run(state_dir: Path, *args: str, timeout: float = 3600) -> str:
    account = Account.for_service("postgres")
    kwargs: dict[str, Any] = {}
    if account:
        kwargs.update(user=account.uid, group=account.gid, extra_groups=[])
    argv = [_pgbackrest(), f"--config={config_path(state_dir)}", f"--stanza={STANZA}", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout, **kwargs)
    out: str = proc.stdout
    if proc.returncode != 0:
        raise ServiceError(f"pgbackrest {args[-1]} failed (exit {proc.returncode}): {(proc.stderr or out)[-2000:]}")
    return out


def configure(state_dir: Path, info: PostgresInfo) -> Path:
    """Write pgBackRest's configuration for the local cluster, create its repository and stanza, and start
    archiving WAL into it. Idempotent."""
    root = state_dir.resolve()
    conf = config_path(state_dir)
    repo = root / "backup"
    for d in (conf.parent, repo, conf.parent / "log", conf.parent / "lock"):
        d.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "[global]\n"
        f"repo1-path={repo}\n"
        "repo1-retention-full=2\n"
        "compress-type=zst\n"
        "process-max=2\n"
        "start-fast=y\n"
        f"log-path={conf.parent / 'log'}\n"
        f"lock-path={conf.parent / 'lock'}\n"
        "log-level-console=warn\n"
        "log-level-file=info\n"
        f"\n[{STANZA}]\n"
        f"pg1-path={info.data_dir}\n"
        f"pg1-port={info.port}\n"
        f"pg1-socket-path={postgres.socket_dir(info)}\n"
    )
    account = Account.for_service("postgres")
    if account:
        account.own(conf.parent)
        account.own(repo)
    command = f"{_pgbackrest()} --config={conf} --stanza={STANZA} archive-push %p"
    with psycopg.connect(info.url("postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'postgres'").fetchone():
            conn.execute("CREATE ROLE postgres LOGIN SUPERUSER")  # the service account, by peer authentication
        conn.execute(psycopg.sql.SQL("ALTER SYSTEM SET archive_command = {}").format(psycopg.sql.Literal(command)))
        conn.execute("SELECT pg_reload_conf()")
    if not (repo / "backup" / STANZA).exists():
        _run(state_dir, "stanza-create")
    _run(state_dir, "check")
    return conf


def backup(state_dir: Path, info: PostgresInfo, kind: str = "full") -> list[str]:
    """A backup (full, diff or incr) of the local cluster; what the repository holds after it."""
    if kind not in ("full", "diff", "incr"):
        raise ServiceError(f"backup kind {kind!r}: full, diff or incr")
    configure(state_dir, info)
    _run(state_dir, f"--type={kind}", "backup")
    return [line for line in _run(state_dir, "info").splitlines() if line.strip()]


def restore(state_dir: Path, target: str | None, into: Path) -> PostgresInfo:
    """Restore the repository's backups and WAL into a fresh cluster under ``into`` (to the time ``target``,
    RFC 3339, or to the end of the archive), start it on a free port and wait until it is promoted; where it
    runs. The source cluster is not touched."""
    into = into.resolve()
    data = into / "data"
    if data.exists() and any(data.iterdir()):
        raise ServiceError(f"{data} is not empty: restore into a fresh directory")
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    account = Account.for_service("postgres")
    if account:
        account.check_can_reach(into)
        account.own(into)
    args = [f"--pg1-path={data}", "--archive-mode=off"]
    if target:  # else to the end of the archive (the default type), promoted when it is replayed
        args += ["--type=time", f"--target={target}", "--target-action=promote"]
    _run(state_dir, *args, "restore")
    source = services.ServiceState.load(state_dir).postgres
    if source is None:
        raise ServiceError(f"no local cluster recorded in {state_dir}")
    port = free_port()
    (data / "lykta.conf").write_text(postgres.config_text(port, into, archive=False))
    (data / "postgresql.auto.conf").write_text(
        "\n".join(
            line
            for line in (data / "postgresql.auto.conf").read_text().splitlines()
            if not line.startswith("archive_command")
        )
        + "\n"
    )
    if account:
        account.own(into)
    restored = replace(source, port=port, data_dir=str(data), pid=0)
    info = postgres.start_existing(into, restored)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(info.url(), autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row and not row[0]:
                    return info
        except psycopg.OperationalError:
            pass
        time.sleep(0.5)
    raise ServiceError(f"the restored cluster in {into} did not finish recovery (log: {into / 'postgres.log'})")

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
from lykta import ha, postgres, services
from lykta.postgres import PostgresInfo
from lykta.process import Account, free_port
from storage import cluster as cluster_store

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


def _members(state_dir: Path, info: PostgresInfo | None) -> tuple[str, str]:
    """pgBackRest's lines for the database's members (one local cluster, or the Patroni cluster's three: it
    backs up from whichever is the primary), and a superuser address that follows the primary."""
    if info is not None:
        lines = f"pg1-path={info.data_dir}\npg1-port={info.port}\npg1-socket-path={postgres.socket_dir(info)}\n"
        return lines, info.url("postgres")
    cluster = ha.HaCluster.load((state_dir / "ha").resolve())
    if cluster is None:
        raise ServiceError(f"no local database in {state_dir}: run lykta services up (or up --ha)")
    lines = "".join(
        f"pg{n}-path={cluster.data_dir(m)}\npg{n}-port={m.pg_port}\npg{n}-socket-path={ha.socket_dir(cluster, m)}\n"
        for n, m in enumerate(cluster.members, start=1)
    )
    return lines, cluster.url(database="postgres")


def configure(state_dir: Path, info: PostgresInfo | None) -> Path:
    """Write pgBackRest's configuration for the local cluster (``info``; None: the Patroni cluster of
    ``lykta services up --ha``), create its repository and stanza, and start archiving WAL into it.
    Idempotent."""
    root = state_dir.resolve()
    conf = config_path(state_dir)
    repo = root / "backup"
    for d in (conf.parent, repo, conf.parent / "log", conf.parent / "lock"):
        d.mkdir(parents=True, exist_ok=True)
    members, admin_url = _members(state_dir, info)
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
        "archive-timeout=120\n"
        f"\n[{STANZA}]\n{members}"
    )
    account = Account.for_service("postgres")
    if account:
        account.own(conf.parent)
        account.own(repo)
    # run by the server's shell in its data directory: every member pushes as itself, whichever leads
    command = f'{_pgbackrest()} --config={conf} --stanza={STANZA} --pg1-path="$PWD" archive-push %p'
    with psycopg.connect(admin_url, autocommit=True) as conn:
        cluster_store.ensure_service_role(conn)
        if info is not None:
            cluster_store.set_archive_command(conn, command)
    if info is None:  # Patroni owns the members' configuration: every member archives, whichever leads
        cluster = ha.HaCluster.load((state_dir / "ha").resolve())
        if cluster is None:
            raise ServiceError(f"the Patroni cluster of {state_dir} is gone")
        ha.set_parameters(cluster, {"archive_command": command})
    if not (repo / "backup" / STANZA).exists():
        _run(state_dir, "stanza-create")
    _run(state_dir, "check")
    return conf


def backup(state_dir: Path, info: PostgresInfo | None, kind: str = "full") -> list[str]:
    """A backup (full, diff or incr) of the local cluster (None: the Patroni cluster, from its primary); what
    the repository holds after it."""
    if kind not in ("full", "diff", "incr"):
        raise ServiceError(f"backup kind {kind!r}: full, diff or incr")
    configure(state_dir, info)
    _run(state_dir, f"--type={kind}", "backup")
    return [line for line in _run(state_dir, "info").splitlines() if line.strip()]


def _from_cluster(state_dir: Path) -> PostgresInfo:
    cluster = ha.HaCluster.load((state_dir / "ha").resolve())
    if cluster is None:
        raise ServiceError(f"no local database recorded in {state_dir}")
    return PostgresInfo("127.0.0.1", 0, postgres.SUPERUSER, cluster.password, postgres.DATABASE, 0, "",
                        str(postgres.find_bindir()))  # fmt: skip


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
        args += ["--type=time", f"--target={target}", "--target-action=promote", "--target-timeline=latest"]
    _run(state_dir, *args, "restore")
    source = services.ServiceState.load(state_dir).postgres or _from_cluster(state_dir)
    port = free_port()
    (data / "lykta.conf").write_text(postgres.config_text(port, into, archive=False))
    conf_file = data / "postgresql.conf"
    if "include_if_exists = 'lykta.conf'" not in conf_file.read_text():  # a Patroni member's: lykta's settings win
        with conf_file.open("a") as fh:
            fh.write("\ninclude_if_exists = 'lykta.conf'\n")
    (data / "patroni.dynamic.json").unlink(missing_ok=True)
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
                if not cluster_store.in_recovery(conn):
                    return info
        except psycopg.OperationalError:
            pass
        time.sleep(0.5)
    raise ServiceError(f"the restored cluster in {into} did not finish recovery (log: {into / 'postgres.log'})")


def archive_now(url: str, timeout: float = 120.0) -> str:
    """Close the current WAL segment and wait until it is archived (what was committed so far is then in the
    repository); the segment's name."""
    with psycopg.connect(url, autocommit=True) as conn:
        segment = cluster_store.close_wal_segment(conn)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = cluster_store.archiver(conn)
            if done[0] and done[0] >= segment:
                return segment
            time.sleep(0.2)
    raise ServiceError(f"WAL segment {segment} was not archived within {timeout:.0f} s (last failed: {done})")

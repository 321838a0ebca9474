"""Process and port helpers for the local services: free ports, pids, service accounts."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import signal
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from floor.errors import ServiceError


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` nobody listens on; ``preferred`` when it is free."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on ``port``; like PostgreSQL and Mosquitto, ignore TIME_WAIT leftovers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def accepts_connections(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie child counts as gone, and is reaped)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in {"Z", "X"}


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stop_pid(pid: int, sig: signal.Signals, timeout: float = 60.0) -> bool:
    """Send ``sig`` and wait for the process to end; SIGKILL after ``timeout``. False if it was gone."""
    if not is_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while is_alive(pid):
        time.sleep(0.05)
    return True


@dataclass(frozen=True)
class Account:
    """The unprivileged account a service runs as when lykta runs as root."""

    name: str
    uid: int
    gid: int

    @classmethod
    def for_service(cls, name: str) -> Account | None:
        """None when lykta does not run as root: the service then runs as the current user."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ServiceError(
                f"running as root, but the service account {name!r} does not exist; run ./bootstrap setup"
            ) from None
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid)

    def own(self, path: Path) -> None:
        for root, dirs, files in os.walk(path):
            os.chown(root, self.uid, self.gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.uid, self.gid)

    def blocking_parent(self, path: Path) -> Path | None:
        """The first ancestor of ``path`` this account cannot enter, or None."""
        groups = {self.gid, *(g for g in _groups_of(self.name))}
        for parent in reversed(path.resolve().parents):
            st = parent.stat()
            if st.st_uid == self.uid:
                ok = bool(st.st_mode & stat.S_IXUSR)
            elif st.st_gid in groups:
                ok = bool(st.st_mode & stat.S_IXGRP)
            else:
                ok = bool(st.st_mode & stat.S_IXOTH)
            if not ok:
                return parent
        return None

    def check_can_reach(self, path: Path) -> None:
        """Fail clearly when an ancestor of ``path`` is not traversable by this account."""
        parent = self.blocking_parent(path)
        if parent is not None:
            raise ServiceError(
                f"the service account {self.name!r} cannot enter {parent} "
                f"(mode {stat.filemode(parent.stat().st_mode)}), so it cannot reach {path}; choose another "
                f"state directory (--state-dir or LYKTA_STATE_DIR) or allow traversal with: chmod o+x {parent}"
            )


def _groups_of(user: str) -> list[int]:
    return [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]

"""``lykta ingest --workers N``: N ingest processes, one per core, each storing its partition of the devices.

A Python process decodes on one core. Each worker holds a plain, persistent subscription to all telemetry and
stores the devices whose id hashes to its partition (``k/N``), acknowledging the others at once: every message
waits in every worker's broker session until that worker has decided about it, so a broker restart (which
forgets shared subscriptions in Mosquitto 2.0) or a dead worker loses nothing.
Each worker gets a stable client id (``<id>-<k>of<N>``) so that a restarted worker, or a restarted supervisor,
resumes the same broker session and receives what waited in it, and a metrics port of its own. The count is in
the id: a new number of workers gets new sessions, and worker 1 drains and removes the earlier layout's sessions
once all new workers have subscribed (:meth:`ingest.service.Ingest._retire_earlier_layouts`), so that changing
``--workers`` loses nothing.

A worker that exits while the supervisor is not stopping is started again under the same client id, after a
backoff (0.5 s doubling to 30 s). One that dies more than ``ingest_restart_limit`` times within five minutes is
given up on: the supervisor stops the others and exits 1, so that the service manager above it sees the
failure. SIGTERM and SIGINT are passed on; the supervisor exits when all workers have, with the worst code.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from types import FrameType

from floor.config import Settings
from ingest.service import client_id_for, session_ids
from ingest.write import backoff

log = logging.getLogger("lykta.ingest")

RESTART_WINDOW_S = 300.0


@dataclass
class Worker:
    number: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    code: int | None = None


def supervise(settings: Settings, workers: int, argv: list[str]) -> int:
    base = client_id_for(settings)
    args = [sys.executable, "-m", "lykta.cli", *_without_workers(argv)]
    team = []
    for n, client_id in enumerate(session_ids(base, workers), start=1):
        env = {**os.environ, "LYKTA_INGEST_CLIENT_ID": client_id, "LYKTA_INGEST_PARTITION": f"{n}/{workers}"}
        if settings.ingest_metrics_port:
            env["LYKTA_INGEST_METRICS_PORT"] = str(settings.ingest_metrics_port + n)
        team.append(Worker(n, env))
    stopping: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        del frame
        stopping.append(signum)
        for w in team:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for w in team:
        w.proc = subprocess.Popen(args, env=w.env)
    gave_up = False
    while True:
        now = time.monotonic()
        running = False
        for w in team:
            if w.proc is not None and w.proc.poll() is None:
                running = True
                continue
            if w.proc is not None:  # it ended just now
                w.code, w.proc = w.proc.returncode, None
                if not stopping and not gave_up:
                    gave_up = _schedule(w, settings.ingest_restart_limit, now)
                    if gave_up:
                        forward(signal.SIGTERM, None)
            if w.restart_at is not None and not stopping and not gave_up:
                running = True
                if now >= w.restart_at:
                    log.info("restarting ingest worker %d under the same client id", w.number)
                    w.restart_at = None
                    w.proc = subprocess.Popen(args, env=w.env)
        if not running:
            break
        time.sleep(0.2)
    codes = [w.code or 0 for w in team]
    return 1 if gave_up else max(codes, default=0)


def _schedule(w: Worker, limit: int, now: float) -> bool:
    """Plan the restart of a worker that ended; True when it died too often and the supervisor gives up."""
    w.deaths.append(now)
    while w.deaths and now - w.deaths[0] > RESTART_WINDOW_S:
        w.deaths.popleft()
    if len(w.deaths) > limit:
        log.error(
            "ingest worker %d ended %d times within %.0f s (last exit code %s); the supervisor gives up",
            w.number,
            len(w.deaths),
            RESTART_WINDOW_S,
            w.code,
        )
        return True
    delay = backoff(len(w.deaths) - 1, base=0.5, cap=30.0)
    log.warning("ingest worker %d ended with exit code %s; restarting it in %.1f s", w.number, w.code, delay)
    w.restart_at = now + delay
    return False


def _without_workers(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return out

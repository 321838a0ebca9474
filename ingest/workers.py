"""``lykta ingest --workers N``: N ingest processes on one shared subscription, one per core.

A Python process decodes on one core; the shared subscription lets the broker
spread messages over several. Each worker gets a stable client id
(``<id>-<n>``) so that a restarted supervisor resumes the same sessions, and a
metrics port of its own. SIGTERM and SIGINT are passed on; the supervisor exits
when all workers have.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

from floor.config import Settings
from ingest.service import client_id_for


def supervise(settings: Settings, workers: int, argv: list[str]) -> int:
    base = client_id_for(settings)
    args = _without_workers(argv)
    procs = []
    for n in range(1, workers + 1):
        env = {**os.environ, "LYKTA_INGEST_CLIENT_ID": f"{base}-{n}"}
        if settings.ingest_metrics_port:
            env["LYKTA_INGEST_METRICS_PORT"] = str(settings.ingest_metrics_port + n)
        procs.append(subprocess.Popen([sys.executable, "-m", "lykta.cli", *args], env=env))

    def forward(signum: int, frame: FrameType | None) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = []
    for proc in procs:
        while True:
            try:
                codes.append(proc.wait())
                break
            except subprocess.TimeoutExpired:  # pragma: no cover - wait() without timeout does not raise
                time.sleep(0.1)
    return max(codes, default=0)


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

"""``lykta simulate``: a simulated city, or load mode, published to the broker."""

from __future__ import annotations

import ssl
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from floor.mqtt_login import client_tls
from simulators import fleet as fleets
from simulators import scenario as scenarios
from simulators.clock import SimClock
from simulators.engine import ground_truth, observed_truth, simulate, write_ground_truth
from simulators.load import LoadPlan, run_load
from simulators.publish import PublishReport, publish


@dataclass(frozen=True)
class SimulationRequest:
    mqtt_url: str
    tenant: str
    fleet_file: Path | None = None
    generate: int = 0
    scenario_file: Path | None = None
    speed: float | None = None
    duration: float | None = None
    start: float | None = None
    end: float | None = None
    """without ``start``: the scenario ends then (``--start now``: it ends now)"""
    seed: int | None = None
    ground_truth_file: Path | None = None
    quiet: bool = False
    login: tuple[str, str] | None = None
    """a broker account allowed to publish for the tenant's devices (its gateway account)"""
    ca_file: Path | None = None
    """CA that verifies the broker for mqtts://"""


def _endpoint(url: str, ca_file: Path | None) -> tuple[str, int, ssl.SSLContext | None]:
    parts = urlsplit(url)
    tls = client_tls(url, ca_file)
    return parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), tls


class ProgressLine:
    """One line on stderr: simulated time, share done, publications, rate."""

    def __init__(self, start: float, end: float, quiet: bool) -> None:
        self.start, self.end, self.quiet = start, end, quiet
        self.began = time.monotonic()
        self.tty = sys.stderr.isatty()

    def __call__(self, sim_t: float, count: int) -> None:
        if self.quiet:
            return
        done = 100 * (sim_t - self.start) / max(self.end - self.start, 1)
        rate = count / max(time.monotonic() - self.began, 1e-6)
        when = datetime.fromtimestamp(sim_t, UTC).strftime("%Y-%m-%d %H:%M")
        line = f"simulated {when} UTC ({done:5.1f} %) | {count:,} publications | {rate:,.0f}/s"
        sys.stderr.write(("\r" + line) if self.tty else line + "\n")
        sys.stderr.flush()


async def run_simulation(req: SimulationRequest) -> tuple[PublishReport, int]:
    """Build the fleet and the scenario, write the ground truth, publish; returns (report, faults)."""
    seed = req.seed if req.seed is not None else scenarios.seed_of(req.scenario_file)
    if req.fleet_file is not None:
        fleet = fleets.from_file(req.fleet_file, req.tenant, seed)
    else:
        fleet = fleets.generate(
            req.tenant, seed, cabinets=max(1, req.generate // 200), lamps_per_circuit=50, circuits_per_cabinet=4
        )
    if req.scenario_file is not None:
        scenario = scenarios.load(
            req.scenario_file, fleet.assets, fleet.children, duration=req.duration, start=req.start, end=req.end
        )
    else:
        scenario = scenarios.build(
            {"seed": seed},
            fleet.assets,
            fleet.children,
            duration=req.duration or 86400,
            start=req.start,
            end=req.end if req.end is not None else time.time(),
        )
    if req.seed is not None and scenario.seed != req.seed:
        scenario = scenarios.Scenario(
            seed=req.seed, start=scenario.start, end=scenario.end, faults=scenario.faults, source=scenario.source
        )
    truth = ground_truth(fleet, scenario)
    if req.ground_truth_file is not None:
        write_ground_truth(req.ground_truth_file, truth)  # written now, completed with natural conditions below
    own = {t.device_id for t in truth if t.fault == "communicationFailure"}
    host, port, tls = _endpoint(req.mqtt_url, req.ca_file)
    progress = ProgressLine(scenario.start, scenario.end, req.quiet)
    report = await publish(
        host,
        port,
        simulate(fleet, scenario),
        SimClock(scenario.start, req.speed),
        own_links=own,
        progress=progress,
        login=req.login,
        tls=tls,
    )
    if not req.quiet and progress.tty:
        sys.stderr.write("\n")
    if req.ground_truth_file is not None:
        write_ground_truth(req.ground_truth_file, truth + observed_truth(fleet))
    return report, len(truth)


async def run_load_mode(  # noqa: PLR0917 - mirrors the command-line options
    mqtt_url: str,
    tenant: str,
    devices: list[str],
    messages: int,
    connections: int,
    rate: float,
    login: tuple[str, str] | None = None,
    ca_file: Path | None = None,
) -> tuple[int, float]:
    host, port, tls = _endpoint(mqtt_url, ca_file)
    plan = LoadPlan(
        tenant=tenant,
        devices=devices,
        start=0,
        stop=messages,
        base=time.time() - 86400 * 7,
        rate=rate,
        connections=connections,
    )
    return await run_load(host, port, plan, login=login, tls=tls)

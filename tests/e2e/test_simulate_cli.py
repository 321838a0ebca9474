"""``lykta simulate`` through the real broker into ingest: everything generated arrives, Last Wills included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from ingest.decode import Limits, Metric, decode
from simulators import fleet as fleets
from simulators import scenario as scenarios
from simulators.engine import simulate
from tests.helpers import RunningIngest, ingest_settings, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SCENARIO = """
seed: 3
start: {start}
duration: 6h
faults:
  - {{fault: communicationFailure, target: SL-0007, start: +1h, duration: 2h}}
  - {{fault: lampFailure, target: SL-0008, start: +0s}}
  - {{fault: malformedPayload, target: SL-0009, start: +2h, duration: 1h}}
"""


def test_simulate_publishes_a_scenario_that_ingest_stores_completely(
    town_url: str, broker: str, tmp_path: Path
) -> None:
    import time
    from datetime import UTC, datetime

    start = datetime.fromtimestamp(int(time.time()) - 8 * 3600, UTC).isoformat()
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(SCENARIO.format(start=start))
    truth = tmp_path / "truth.csv"

    fleet = fleets.from_file(EXAMPLES / "solvik.csv", "solvik", 3)
    plan = scenarios.load(scenario_file, fleet.assets, fleet.children)
    with psycopg.connect(town_url) as conn:
        catalogue = {
            r[1]: Metric(*r)
            for r in conn.execute("SELECT metric_id, name, senml_unit, min_value, max_value FROM metrics").fetchall()
        }
    expected = sum(
        len(decode(p.topic, p.payload, time.time(), catalogue, Limits()).readings)
        for p in simulate(fleet, plan)
        if p.action != "drop"
    )

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")}, "LYKTA_MQTT_URL": broker}
    with RunningIngest(ingest_settings(), town_url, broker):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "lykta.cli",
                "simulate",
                "--fleet",
                str(EXAMPLES / "solvik.csv"),
                "--scenario",
                str(scenario_file),
                "--asap",
                "--ground-truth",
                str(truth),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "3 injected fault(s)" in result.stdout
        with psycopg.connect(town_url, autocommit=True) as conn:
            wait_for(
                lambda: conn.execute("SELECT count(*) FROM telemetry").fetchone() == (expected,),
                timeout=120,
                what=f"{expected} readings",
            )
            wait_for(
                lambda: conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (6,),
                what="the malformed messages",
            )
            offline = conn.execute(
                """SELECT count(*) FROM device_status s JOIN devices d USING (device_key)
                   WHERE d.device_id = 'SLC-0007' AND NOT s.online"""
            ).fetchone()
    assert offline == (1,), "the broker's Last Will announced the silent device offline"
    injected = [line for line in truth.read_text().splitlines()[1:] if ",condition," not in line]
    assert sorted(line.split(",")[2] for line in injected) == [
        "communicationFailure",
        "lampFailure",
        "malformedPayload",
    ]
    assert "simulated" in result.stderr


def test_start_now_ends_the_scenario_now(broker: str, tmp_path: Path) -> None:
    """``--start now`` without ``--duration`` started the scenario now (its help says "to end now"): a week
    published ``--asap`` was all in the future."""
    import csv
    import time
    from datetime import datetime

    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(SCENARIO.format(start="2026-01-01T00:00:00+00:00"))  # 6 hours, starting long ago
    truth = tmp_path / "truth.csv"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")}, "LYKTA_MQTT_URL": broker}
    before = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "lykta.cli", "simulate", "--fleet", str(EXAMPLES / "solvik.csv"), "--scenario",
         str(scenario_file), "--asap", "--start", "now", "--ground-truth", str(truth)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    after = time.time()
    with truth.open() as fh:
        rows = list(csv.DictReader(fh))
    ends = [datetime.fromisoformat(r["end"].replace("Z", "+00:00")).timestamp() for r in rows if r["end"]]
    starts = [datetime.fromisoformat(r["start"].replace("Z", "+00:00")).timestamp() for r in rows]
    assert rows and max(ends) <= after  # nothing in the future
    assert min(starts) >= before - 6 * 3600 - 60  # the scenario's own 6 hours, ending now

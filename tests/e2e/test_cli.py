"""The real ``lykta`` command in a subprocess, as an operator runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from lykta.services import ServiceState

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LYKTA = [sys.executable, "-m", "lykta.cli"]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")}
    return subprocess.run(
        [*LYKTA, *args], capture_output=True, text=True, env={**base, **(env or {})}, timeout=timeout, check=False
    )


def test_demo_brings_up_services_migrates_and_imports_the_sample(state_dir: Path) -> None:
    first = run("--state-dir", str(state_dir), "demo")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "postgresql running: 127.0.0.1:" in out
    assert "mosquitto running: mqtt://127.0.0.1:" in out
    assert "gateway: account gateway-solvik (client id the same)" in out  # the simulators' account
    assert "allow_anonymous false" in (state_dir / "mosquitto" / "mosquitto.conf").read_text()
    assert "applied 0001_core.sql" in out
    assert "license apache: Apache-2.0 edition" in out
    assert "tenant solvik: Solvik kommun (language sv, time zone Europe/Stockholm)" in out
    assert "streetlight: 244" in out and "cabinet: 3" in out and "devices: 260" in out
    assert "cases from the findings (lykta cases run)" in out
    assert "work orders of ljus-norr" in out and "e-mails" in out and "0 to retry" in out
    assert "accepted and done: case now verifying" in out
    assert "joined case #" in out and "the reporter sees status 'open'" in out
    assert "lykta · City overview: 5 panels, rows per panel over the week: [260," in out
    source = yaml.safe_load((state_dir / "grafana" / "provisioning" / "datasources" / "lykta.yaml").read_text())
    recorded = ServiceState.load(state_dir).postgres
    assert recorded is not None
    ds = source["datasources"][0]  # the demo's own database, read as Solvik's reader role (not the owner)
    assert ds["url"] == f"127.0.0.1:{recorded.port}" and ds["user"] == "lykta_grafana_solvik"
    assert "as lykta_grafana_solvik" in out
    signed = re.search(r"open http://127\.0\.0\.1:8080/console and sign in as (\S+) with password (\S+)", out)
    assert signed, out[-600:]  # the demo ends with the console's address and a sign-in that works
    import httpx

    from cases.api import create_app
    from cases.policy import Policies
    from tests.helpers import served

    with served(create_app(recorded.url(), Policies(), pool_size=1)) as base:
        answer = httpx.post(base + "/console/login", data={"email": signed[1], "password": signed[2]})
        assert answer.status_code == 303 and answer.headers["location"] == "/console"
    second = run("--state-dir", str(state_dir), "demo")
    assert second.returncode == 0, second.stderr
    assert "schema up to date" in second.stdout
    assert "0 new, 0 updated, 268 unchanged" in second.stdout
    status = run("--state-dir", str(state_dir), "services", "status")
    assert status.returncode == 0 and status.stdout.count(" running") == 2
    down = run("--state-dir", str(state_dir), "services", "down")
    assert down.stdout.split("\n")[:2] == ["mosquitto stopped", "postgresql stopped"]
    status = run("--state-dir", str(state_dir), "services", "status")
    assert status.returncode == 3 and status.stdout.count(" stopped") == 2


def test_admin_commands_against_a_database(cli_env: dict[str, str]) -> None:
    info = run("db", "info", env=cli_env)
    assert info.returncode == 0, info.stderr
    assert "TimescaleDB" in info.stdout and "storage path apache" in info.stdout
    assert run("db", "migrate", env=cli_env).stdout.startswith("schema up to date")
    added = run(
        "tenants",
        "add",
        "solvik",
        "--name",
        "Solvik kommun",
        "--language",
        "sv",
        "--timezone",
        "Europe/Stockholm",
        env=cli_env,
    )
    assert added.returncode == 0, added.stderr
    assert run("tenants", "list", env=cli_env).stdout == "solvik\tSolvik kommun\tsv\tEurope/Stockholm\n"
    imported = run("assets", "import", str(EXAMPLES / "solvik.csv"), "--tenant", "solvik", env=cli_env)
    assert imported.returncode == 0, imported.stderr
    assert "268 new" in imported.stdout
    maintained = run("db", "maintain", env=cli_env)
    assert maintained.returncode == 0 and "rollups: 0 hour(s)" in maintained.stdout


def test_errors_are_one_clear_line_and_exit_1(cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": null, '
        '"properties": {"asset_id": "X1", "kind": "lamp"}}]}'
    )
    run("tenants", "add", "solvik", "--name", "Solvik", env=cli_env)
    result = run("assets", "import", str(bad), "--tenant", "solvik", env=cli_env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"lykta: error: {bad}: 1 problem(s), nothing imported" in result.stderr
    assert "feature 1, field 'kind': unknown asset kind 'lamp'" in result.stderr

    unknown = run("assets", "import", str(EXAMPLES / "solvik.csv"), "--tenant", "nowhere", env=cli_env)
    assert unknown.returncode == 1 and "unknown tenant 'nowhere'" in unknown.stderr

    unreachable = run("db", "info", env={"LYKTA_DATABASE_URL": "postgresql://lykta:s3cret@127.0.0.1:1/lykta"})
    assert unreachable.returncode == 1
    assert "cannot connect to postgresql://lykta:***@127.0.0.1:1/lykta" in unreachable.stderr
    assert "s3cret" not in unreachable.stderr

    badconf = run("db", "info", env={"LYKTA_RETENTION_DAYS": "-3"})
    assert badconf.returncode == 1 and "setting 'retention_days'" in badconf.stderr


def test_help_names_the_environment_variables() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "LYKTA_DATABASE_URL" in result.stdout and "services" in result.stdout

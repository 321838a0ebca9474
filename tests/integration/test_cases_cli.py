"""``lykta crews``, ``lykta tokens`` and ``lykta cases`` as a person runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.helpers import wait_for
from tests.integration.test_cases import finding
from tests.integration.test_rules import NIGHT


def lykta(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")}, "LYKTA_DATABASE_URL": url}
    env["LYKTA_SMTP_PORT"] = "9"  # nothing listens: mail waits in the outbox
    return subprocess.run(
        [sys.executable, "-m", "lykta.cli", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_crews_tokens_and_a_cases_cycle_from_the_command_line(town_url: str) -> None:
    ok = lykta(town_url, "crews", "add", "solvik", "ljus", "--name", "Ljusservice", "--email", "ljus@crews.example",
               "--areas", "Norr,Syd", "--skills", "lighting")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    listed = lykta(town_url, "crews", "list", "solvik")
    assert "ljus" in listed.stdout and "areas=Norr,Syd" in listed.stdout
    for args, message in [
        (["crews", "add", "solvik", "Bad Id"], "crew id 'Bad Id'"),
        (["crews", "add", "solvik", "x", "--email", "nobody"], "is not an e-mail address"),
        (["crews", "add", "solvik", "x", "--webhook", "http://127.0.0.1:9/h"], "--webhook needs --secret"),
        (["crews", "add", "atlantis", "x"], "unknown tenant 'atlantis'"),
        (["tokens", "create", "--tenant", "solvik", "--role", "crew"], "a crew token needs --crew"),
        (["tokens", "create", "--tenant", "solvik", "--role", "crew", "--crew", "ghost"], "unknown crew"),
        (["tokens", "revoke", "lyk_nothing"], "no such active token"),
        (["tokens", "create", "--tenant", "solvik", "--role", "operator", "--days", "0"], "a token lives 1 to 3650"),
        (["cases", "list", "--status", "weird"], "--status must be"),
    ]:
        bad = lykta(town_url, *args)
        assert bad.returncode == 1 and message in bad.stderr, (args, bad.stderr)
    token = lykta(town_url, "tokens", "create", "--tenant", "solvik", "--role", "crew", "--crew", "ljus")
    assert token.returncode == 0 and token.stdout.startswith("lyk_")
    brief = lykta(town_url, "tokens", "create", "--tenant", "solvik", "--role", "operator", "--days", "7")
    assert brief.returncode == 0, brief.stderr
    with psycopg.connect(town_url) as conn:
        stored = conn.execute("SELECT token_hash FROM api_tokens WHERE role = 'crew'").fetchone()
        lives = conn.execute(
            "SELECT role, round(extract(epoch FROM expires_at - now()) / 86400) FROM api_tokens ORDER BY role"
        ).fetchall()
    assert stored is not None and token.stdout.strip() not in stored[0]  # only the hash is kept
    assert lives == [("crew", 90), ("operator", 7)]  # a crew's token lives 90 days unless told otherwise
    assert lykta(town_url, "tokens", "revoke", token.stdout.strip()).stdout.strip() == "token revoked"

    finding(town_url, "SL-0003", "lampFailure", NIGHT)
    cycle = lykta(town_url, "cases", "run", "--once")
    assert cycle.returncode == 0, cycle.stderr
    assert "findings=1" in cycle.stdout and "opened=1" in cycle.stdout and "retrying=1" in cycle.stdout
    cases = lykta(town_url, "cases", "list", "--tenant", "solvik")
    assert "solvik/SL-0003" in cases.stdout and "lampFailure" in cases.stdout and "1 case(s)" in cases.stdout
    bad_policy = lykta(town_url, "cases", "run", "--once", "--policy", "/nonexistent.yaml")
    assert bad_policy.returncode == 1 and "/nonexistent.yaml: cannot read" in bad_policy.stderr


def test_cases_run_wakes_on_new_findings_and_stops_cleanly(town_url: str, tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")}, "LYKTA_DATABASE_URL": town_url}
    env["LYKTA_SMTP_PORT"] = "9"
    env["LYKTA_LOG_LEVEL"] = "DEBUG"
    log = tmp_path / "cases.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lykta.cli", "cases", "run", "--every", "300"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )
    try:

        def listening() -> bool:
            with psycopg.connect(town_url) as conn:
                return bool(
                    conn.execute("SELECT 1 FROM pg_stat_activity WHERE query = 'LISTEN lykta_findings'").fetchall()
                )

        wait_for(listening, timeout=30, what="lykta cases run listening")
        # its first cycle (nothing to do) is over; the next is five minutes away
        wait_for(lambda: "cases cycle done" in log.read_text(), timeout=30, what="the first cycle")
        finding(town_url, "SL-0003", "lampFailure", NIGHT)

        def opened() -> bool:
            with psycopg.connect(town_url) as conn:
                return conn.execute("SELECT asset_id FROM cases").fetchall() == [("SL-0003",)]

        wait_for(opened, timeout=20, what="a new finding to wake the case handling (NOTIFY lykta_findings)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    err = log.read_text()
    assert proc.returncode == 0, err

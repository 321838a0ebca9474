"""The whole chain on real services: simulated lamps -> Mosquitto -> ingest -> TimescaleDB -> rules -> a case ->
a work order mailed (aiosmtpd) and posted (local HTTP receiver) -> the crew closes it through the API -> later
telemetry verifies the repair."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import orjson
import psycopg

from cases import outbox
from cases import service as cases_service
from cases.policy import Policies
from floor import config
from rules.evaluate import Shard
from rules.service import run_cycle
from simulators import fleet as fleets
from simulators import scenario as scenarios
from simulators.clock import SimClock
from simulators.engine import Publication, simulate
from simulators.publish import publish
from storage import cases as store
from tests.conftest import Api
from tests.helpers import Inbox, Receiver, RunningIngest, ingest_settings, wait_for
from tests.integration.test_outbox import point_crews_at
from tests.integration.test_rules import NIGHT

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
START = NIGHT - 4 * 3600  # 18:00 UTC: dark in Solvik in November
FIXED = START + 4 * 3600  # the crew replaces the lamp at 22:00


def readings(publications: list[Publication]) -> int:
    return sum(len(orjson.loads(p.payload)["metrics"]) for p in publications if p.topic.endswith("/telemetry"))


def stored(url: str) -> int:
    """Readings committed (ingest's own counters count what it received, before the commit)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
    return int(row[0]) if row else 0


def test_a_dark_lamp_becomes_a_verified_repair(
    api: Api, broker: str, smtp: tuple[int, Inbox], receiver: Receiver, tmp_path: Path
) -> None:
    port, inbox = smtp
    # the night is published in seconds, so receive times cannot tell silence: that rule sits this one out
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: communication-loss\n    enabled: false\n")
    point_crews_at(api.url, receiver)
    fleet = fleets.from_file(EXAMPLES / "solvik.csv", "solvik", 3)
    plan = scenarios.build(
        {
            "seed": 3,
            "duration": "6h",
            "faults": [{"fault": "lampFailure", "target": "SL-0003", "start": "+30m", "duration": "3h30m"}],
        },
        fleet.assets,
        fleet.children,
        start=START,
    )
    publications = list(simulate(fleet, plan))
    first = [p for p in publications if p.t <= START + 3 * 3600]
    later = [p for p in publications if p.t > START + 3 * 3600]
    host, mqtt_port = broker.removeprefix("mqtt://").split(":")
    settings = config.load(environ={}, smtp_port=port, smtp_from="lykta@solvik.example")
    policies = Policies()
    with RunningIngest(ingest_settings(), api.url, broker):
        asyncio.run(publish(host, int(mqtt_port), first, SimClock(START), own_links=set()))
        wait_for(lambda: stored(api.url) >= readings(first), what="the first three hours stored")

        run_cycle(api.url, [rules], START + 3 * 3600, Shard())
        cycle = cases_service.run_once(api.url, policies, settings, START + 3 * 3600)
        assert (cycle.opened, cycle.sent) == (1, 2)
        [mail] = inbox.messages
        assert "Släckt lampa: SL-0003" in mail["text"]
        [hook] = receiver.requests
        headers = {k.lower(): v for k, v in hook["headers"].items()}
        assert headers["x-lykta-signature"] == outbox.sign("s3cret", headers["x-lykta-timestamp"], hook["body"])
        work_order_id = json.loads(hook["body"])["work_order"]["work_order_id"]

        api.clock[0] = FIXED
        token = api.token("solvik", "crew", "ljus-norr")
        with httpx.Client(base_url=api.base, headers={"Authorization": f"Bearer {token}"}) as http:
            assert http.post(f"/api/v1/work-orders/{work_order_id}/accept").status_code == 200
            done = http.post(f"/api/v1/work-orders/{work_order_id}/done", json={"note": "new lamp"})
            assert done.status_code == 200 and done.json()["case_status"] == "verifying"

        asyncio.run(publish(host, int(mqtt_port), later, SimClock(START + 3 * 3600), own_links=set()))
        wait_for(lambda: stored(api.url) >= readings(publications), what="the rest of the night stored")
    for step in range(1, 19):  # the rules engine every ten minutes through the rest of the night
        run_cycle(api.url, [rules], START + 3 * 3600 + 600 * step, Shard())
    cases_service.run_once(api.url, policies, settings, START + 6 * 3600)
    with psycopg.connect(api.url) as conn:
        [case] = conn.execute("SELECT case_id, asset_id, status, resolution FROM cases").fetchall()
        actions = [e.action for e in store.events(conn, case[0])]
        finding = conn.execute(
            "SELECT status, observed_at, cleared_at FROM findings WHERE fault = 'lampFailure'"
        ).fetchall()
    assert case[1:] == ("SL-0003", "resolved", "verified")
    assert [f[0] for f in finding] == ["cleared"]
    assert actions[:3] == ["opened", "work order", "finding"]
    assert {"work order accept", "work order done", "fault cleared", "verified", "resolved"} <= set(actions)

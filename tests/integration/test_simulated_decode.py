"""The simulated week through the telemetry decoder, with the metric catalogue of a real database."""

from __future__ import annotations

from collections import Counter

import psycopg
import pytest

from ingest.decode import Limits, Metric, decode
from simulators import fleet as fleets
from simulators import scenario as scenarios
from simulators.engine import Publication
from tests.unit.test_simulators import simulated_week


@pytest.fixture(scope="module")
def week() -> tuple[fleets.Fleet, scenarios.Scenario, list[Publication]]:
    return simulated_week()


def test_everything_published_decodes_or_is_rejected_as_intended(
    week: tuple[fleets.Fleet, scenarios.Scenario, list[Publication]], conn: psycopg.Connection
) -> None:
    _, _, pubs = week
    catalogue = {
        r[1]: Metric(*r)
        for r in conn.execute("SELECT metric_id, name, senml_unit, min_value, max_value FROM metrics").fetchall()
    }
    expected = {"SLC-0044": "malformed_json", "SLC-0088": "payload_too_large", "SLC-0033": "timestamp_in_future"}
    rejected: Counter[tuple[str, str]] = Counter()
    readings = 0
    for p in pubs:
        if p.action == "drop":
            continue
        d = decode(p.topic, p.payload, p.t + 0.5, catalogue, Limits())
        readings += len(d.readings)
        if d.rejected is not None:
            rejected[(p.device_id, d.rejected.reason)] += 1
    assert {device for device, _ in rejected} == set(expected)
    assert all(expected[device] == reason for device, reason in rejected)
    assert readings > 1_000_000

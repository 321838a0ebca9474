"""The telemetry decoder (pure): every payload form and every reason code of docs/telemetry.md."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from ingest.decode import REASONS, Decoded, Limits, Metric, decode

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()
CATALOGUE = {
    "power_w": Metric(1, "power_w", "W", 0, 250_000),
    "voltage_v": Metric(2, "voltage_v", "V", 0, 300),
    "lamp_on": Metric(6, "lamp_on", None, 0, 1),
    "energy_kwh": Metric(7, "energy_kwh", "kWh", 0, 1e9),
    "road_temp_c": Metric(15, "road_temp_c", "Cel", -60, 80),
    "water_level_m": Metric(19, "water_level_m", "m", 0, 20),
}
LIMITS = Limits()
TOPIC = "lykta/solvik/streetlight_controller/SLC-0001/telemetry"


def run(payload: object, topic: str = TOPIC, limits: Limits = LIMITS) -> Decoded:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return decode(topic, raw, NOW, CATALOGUE, limits)


def reasons(d: Decoded) -> list[str]:
    return [r.reason for r in d.rejections]


def test_single_reading() -> None:
    d = run({"ts": "2026-11-27T11:50:00Z", "seq": 7, "metrics": {"power_w": 41.5, "voltage_v": 231, "lamp_on": True}})
    t = datetime(2026, 11, 27, 11, 50, tzinfo=UTC).timestamp()
    assert d.readings == [(t, 1, 41.5), (t, 2, 231.0), (t, 6, 1.0)]
    assert d.rejections == []
    assert d.topic is not None and (d.topic.tenant, d.topic.device_id) == ("solvik", "SLC-0001")


def test_numeric_and_offset_timestamps_mean_the_same_instant() -> None:
    a = run({"ts": NOW - 60, "metrics": {"power_w": 1}})
    b = run({"ts": "2026-11-27T12:59:00+01:00", "metrics": {"power_w": 1}})
    assert a.readings == b.readings == [(NOW - 60, 1, 1.0)]


def test_batch_keeps_good_entries_and_names_bad_ones() -> None:
    d = run(
        {
            "batch": [
                {"ts": NOW - 600, "metrics": {"power_w": 20.0}},
                {"ts": NOW - 300, "metrics": "oops"},
                {"ts": NOW - 200, "metrics": {"power_w": 21.0, "voltage_v": 999}},
            ]
        }
    )
    assert d.readings == [(NOW - 600, 1, 20.0), (NOW - 200, 1, 21.0)]
    assert reasons(d) == ["bad_schema", "value_out_of_range"]
    assert d.rejected is not None
    assert d.rejected.detail.startswith("batch entry 2: a reading needs a 'metrics' object; also value_out_of_range")


def test_senml_with_base_name_time_units_and_booleans() -> None:
    d = run(
        [
            {"bn": "urn:dev:id:SLC-0001:", "bt": NOW - 100, "n": "power_w", "u": "kW", "v": 0.05},
            {"n": "energy_kwh", "u": "Wh", "v": 1523884, "t": 10},
            {"n": "road_temp_c", "u": "K", "v": 273.15},
            {"n": "water_level_m", "u": "cm", "v": 50},
            {"n": "lamp_on", "vb": False},
        ]
    )
    assert d.rejections == []
    assert d.readings == [
        (NOW - 100, 1, 50.0),
        (NOW - 90, 7, pytest.approx(1523.884)),
        (NOW - 100, 15, pytest.approx(0.0)),
        (NOW - 100, 19, 0.5),
        (NOW - 100, 6, 0.0),
    ]


def test_senml_relative_time_counts_from_receipt() -> None:
    d = run([{"n": "power_w", "t": -30, "v": 3}])
    assert d.readings == [(NOW - 30, 1, 3.0)]


def test_status_and_event_channels() -> None:
    base = "lykta/solvik/streetlight_controller/SLC-0001/"
    bare = decode(base + "status", b"offline", NOW, CATALOGUE, LIMITS)
    assert bare.status is not None and (bare.status.online, bare.status.time) == (False, NOW)
    full = run({"ts": NOW - 5, "state": "online", "reason": "boot"}, base + "status")
    assert full.status is not None and (full.status.online, full.status.time, full.status.reason) == (
        True,
        NOW - 5,
        "boot",
    )
    event = run({"ts": NOW - 1, "event": "pole_tilt", "value": 12.5, "detail": {"axis": "x"}}, base + "event")
    assert event.event is not None
    assert (event.event.event, event.event.value, event.event.detail) == ("pole_tilt", 12.5, {"axis": "x"})


REJECTIONS = [
    (
        "payload_too_large",
        {"ts": NOW, "metrics": {"power_w": 1}, "pad": "x" * 300},
        TOPIC,
        Limits(max_payload_bytes=200),
    ),
    ("bad_topic", {"ts": NOW, "metrics": {"power_w": 1}}, "lykta/solvik/streetlight_controller/telemetry", LIMITS),
    ("bad_topic", {}, "lykta/Solvik!/streetlight_controller/SLC-1/telemetry", LIMITS),
    ("bad_topic", {}, "lykta/solvik/toaster/SLC-1/telemetry", LIMITS),
    ("bad_topic", {}, "lykta/solvik/streetlight_controller/bad id/telemetry", LIMITS),
    ("unknown_channel", {}, "lykta/solvik/streetlight_controller/SLC-1/commands", LIMITS),
    ("bad_encoding", b'{"ts": 1, "metrics": {"power_w": 1}, "x": "\xff\xfe"}', TOPIC, LIMITS),
    ("malformed_json", b'{"ts": 1, "metrics": {"power_w": NaN}}', TOPIC, LIMITS),
    ("malformed_json", b"", TOPIC, LIMITS),
    ("bad_schema", {"ts": NOW}, TOPIC, LIMITS),
    ("bad_schema", {"ts": NOW, "metrics": {}}, TOPIC, LIMITS),
    ("bad_schema", {"ts": NOW, "metrics": {f"m{i}": 1 for i in range(65)}}, TOPIC, LIMITS),
    ("bad_schema", 42, TOPIC, LIMITS),
    ("bad_schema", {"batch": []}, TOPIC, LIMITS),
    ("batch_too_large", {"batch": [{"ts": NOW, "metrics": {"power_w": 1}}] * 3}, TOPIC, Limits(max_batch_entries=2)),
    ("bad_timestamp", {"metrics": {"power_w": 1}}, TOPIC, LIMITS),
    ("bad_timestamp", {"ts": "yesterday", "metrics": {"power_w": 1}}, TOPIC, LIMITS),
    ("bad_timestamp", {"ts": "2026-11-27T11:00:00", "metrics": {"power_w": 1}}, TOPIC, LIMITS),
    ("bad_timestamp", {"ts": True, "metrics": {"power_w": 1}}, TOPIC, LIMITS),
    ("timestamp_in_future", {"ts": NOW + 3600, "metrics": {"power_w": 1}}, TOPIC, LIMITS),
    ("timestamp_too_old", {"ts": NOW - 40 * 86400, "metrics": {"power_w": 1}}, TOPIC, LIMITS),
    ("timestamp_too_old", {"ts": NOW * 1000 - 1e15, "metrics": {"power_w": 1}}, TOPIC, LIMITS),
    ("timestamp_in_future", {"ts": NOW * 1000, "metrics": {"power_w": 1}}, TOPIC, LIMITS),
    ("unknown_metric", {"ts": NOW, "metrics": {"pwr": 1}}, TOPIC, LIMITS),
    ("unit_mismatch", [{"n": "power_w", "u": "V", "v": 1, "bt": NOW}], TOPIC, LIMITS),
    ("value_not_number", {"ts": NOW, "metrics": {"power_w": "41"}}, TOPIC, LIMITS),
    ("value_not_number", {"ts": NOW, "metrics": {"power_w": None}}, TOPIC, LIMITS),
    ("unsupported_value", [{"n": "power_w", "vs": "high", "bt": NOW}], TOPIC, LIMITS),
    ("value_out_of_range", {"ts": NOW, "metrics": {"voltage_v": 400}}, TOPIC, LIMITS),
    ("value_out_of_range", {"ts": NOW, "metrics": {"power_w": -1}}, TOPIC, LIMITS),
    ("unknown_event", {"ts": NOW, "event": "alien_landing"}, TOPIC.replace("telemetry", "event"), LIMITS),
    ("bad_status", {"state": "sleepy"}, TOPIC.replace("telemetry", "status"), LIMITS),
    ("bad_status", b"maybe", TOPIC.replace("telemetry", "status"), LIMITS),
]


@pytest.mark.parametrize(
    ("reason", "payload", "topic", "limits"), REJECTIONS, ids=[f"{r[0]}-{i}" for i, r in enumerate(REJECTIONS)]
)
def test_every_rejection_has_its_reason(reason: str, payload: object, topic: str, limits: Limits) -> None:
    d = run(payload, topic, limits)
    assert d.rejected is not None, d
    assert d.rejected.reason == reason, d.rejected
    assert d.readings == []
    assert d.rejected.detail


def test_partial_message_keeps_valid_readings() -> None:
    d = run({"ts": NOW, "metrics": {"power_w": 40, "voltage_v": 301, "pwr": 1}})
    assert d.readings == [(NOW, 1, 40.0)]
    assert reasons(d) == ["value_out_of_range", "unknown_metric"]


def test_decoder_errors_are_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    import ingest.decode as module

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(module, "_telemetry", broken)
    d = run({"ts": NOW, "metrics": {"power_w": 1}})
    assert d.rejected is not None and d.rejected.reason == "decoder_error"
    assert "ZeroDivisionError: a bug" in d.rejected.detail


def test_every_reason_code_is_documented_and_tested() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "telemetry.md").read_text()
    table = doc.split("## Reason codes", 1)[1]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)
    assert documented == list(REASONS)
    exercised = {r[0] for r in REJECTIONS} | {"decoder_error"}
    registry_level = {"unknown_tenant", "unknown_device", "device_kind_mismatch", "storage_rejected"}
    assert exercised | registry_level == set(REASONS)

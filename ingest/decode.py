"""The telemetry contract (docs/telemetry.md), enforced: topic and payload to readings or reasons.

Pure functions over bytes: no I/O and no exception escapes :func:`decode`. Device
identity is resolved later against the registry; this module knows only the
metric catalogue and the limits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

TENANT_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEVICE_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
RFC3339: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
"""RFC 3339 section 5.6 (date-time), with the space that its note allows between date and time."""
MAX_TOPIC_CHARS: Final = 256
"""The longest topic the contract allows: lykta/ + tenant (63) + kind + device (128) + channel, with room."""
TOPIC_CACHE_BYTES: Final = 8 * 1024 * 1024
"""What the cache of parsed topics may hold (topic characters); valid topics only, so one per device."""
MAX_DETAIL_CHARS: Final = 500
DEVICE_KINDS: Final = frozenset(
    {
        "streetlight_controller",
        "cabinet_meter",
        "road_weather_station",
        "well_level_sensor",
        "pump_controller",
        "bin_fill_sensor",
    }
)
CHANNELS: Final = frozenset({"telemetry", "status", "event"})
EVENTS: Final = frozenset(
    {
        "pole_tilt",
        "door_open",
        "door_closed",
        "supply_lost",
        "supply_restored",
        "pump_fault",
        "collected",
    }
)
SENML_RELATIVE_LIMIT: Final = 2**28
_SENML_PREFIX: Final = re.compile(r"^.*[:/]")

# SenML unit -> (catalogue SenML unit, factor, offset): value * factor + offset.
CONVERSIONS: Final[dict[str, tuple[str, float, float]]] = {
    "kW": ("W", 1000.0, 0.0),
    "Wh": ("kWh", 0.001, 0.0),
    "mV": ("V", 0.001, 0.0),
    "mA": ("A", 0.001, 0.0),
    "cm": ("m", 0.01, 0.0),
    "mm": ("m", 0.001, 0.0),
    "K": ("Cel", 1.0, -273.15),
}

# Every reason code of the contract, in the order of docs/telemetry.md.
REASONS: Final = (
    "payload_too_large",
    "bad_topic",
    "unknown_channel",
    "unknown_tenant",
    "unknown_device",
    "device_kind_mismatch",
    "bad_encoding",
    "malformed_json",
    "bad_schema",
    "batch_too_large",
    "bad_timestamp",
    "timestamp_in_future",
    "timestamp_too_old",
    "unknown_metric",
    "unit_mismatch",
    "value_not_number",
    "unsupported_value",
    "value_out_of_range",
    "unknown_event",
    "bad_status",
    "decoder_error",
    "storage_rejected",
)


@dataclass(frozen=True, slots=True)
class Metric:
    metric_id: int
    name: str
    senml_unit: str | None
    min_value: float
    max_value: float


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int = 262_144
    max_batch_entries: int = 5_000
    max_metrics: int = 64
    max_future_s: float = 300.0
    max_age_s: float = 35 * 86_400.0


@dataclass(frozen=True, slots=True)
class Topic:
    tenant: str
    device_kind: str
    device_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Status:
    time: float
    online: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class Event:
    time: float
    event: str
    value: float | None
    detail: dict[str, Any]


def _short(text: str, tail: str = "") -> str:
    """At most ``MAX_DETAIL_CHARS`` characters, ``tail`` kept."""
    room = MAX_DETAIL_CHARS - len(tail)
    return (text if len(text) <= room else text[: room - 1] + "…") + tail


@dataclass(slots=True)
class Decoded:
    """What one message carried: readings ``(epoch seconds, metric id, value)``, a status or an event.

    ``rejections`` lists what was refused; a message with readings and rejections
    stores the readings and is dead-lettered once with the first reason.
    """

    topic: Topic | None
    readings: list[tuple[float, int, float]] = field(default_factory=list)
    status: Status | None = None
    event: Event | None = None
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def rejected(self) -> Rejection | None:
        if not self.rejections:
            return None
        if len(self.rejections) == 1:
            return self.rejections[0]
        first = self.rejections[0]
        more = "; ".join(f"{r.reason}: {r.detail}" for r in self.rejections[1:20])
        extra = f" (+{len(self.rejections) - 20} more)" if len(self.rejections) > 20 else ""
        return Rejection(first.reason, _short(f"{first.detail}; also {more}", extra))


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_topic_cache: dict[str, Topic] = {}
_topic_cache_bytes = 0


def clear_topic_cache() -> None:
    global _topic_cache_bytes  # noqa: PLW0603 - one cache per process, like the catalogue
    _topic_cache.clear()
    _topic_cache_bytes = 0


def topic_cache_bytes() -> int:
    return _topic_cache_bytes


def parse_topic(topic: str) -> Topic | Rejection:
    """The parts of a topic, or why it is not one of the contract's. Valid topics are cached (bounded by
    ``TOPIC_CACHE_BYTES``); refused ones never, so hostile topics cost nothing to keep."""
    global _topic_cache_bytes  # noqa: PLW0603 - one cache per process, like the catalogue
    cached = _topic_cache.get(topic)
    if cached is not None:
        return cached
    result = _parse_topic(topic)
    if isinstance(result, Topic):
        if _topic_cache_bytes + len(topic) > TOPIC_CACHE_BYTES:
            clear_topic_cache()
        _topic_cache[topic] = result
        _topic_cache_bytes += len(topic)
    return result


def _parse_topic(topic: str) -> Topic | Rejection:
    if len(topic) > MAX_TOPIC_CHARS:
        return Rejection("bad_topic", f"topic of {len(topic)} characters; the contract allows {MAX_TOPIC_CHARS}")
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "lykta":
        return Rejection(
            "bad_topic", f"topic {topic[:200]!r} is not lykta/<tenant>/<device-kind>/<device-id>/<channel>"
        )
    _, tenant, kind, device, channel = parts
    if not TENANT_RE.match(tenant):
        return Rejection("bad_topic", f"tenant segment {tenant[:80]!r} is not a valid tenant id")
    if kind not in DEVICE_KINDS:
        return Rejection("bad_topic", f"device kind {kind[:80]!r} is not one of {', '.join(sorted(DEVICE_KINDS))}")
    if not DEVICE_RE.match(device):
        return Rejection("bad_topic", f"device segment {device[:80]!r} is not a valid device id")
    if channel not in CHANNELS:
        return Rejection("unknown_channel", f"channel {channel[:80]!r} is not telemetry, status or event")
    return Topic(tenant=tenant, device_kind=kind, device_id=device, channel=channel)


def parse_time(raw: Any, received_at: float, limits: Limits) -> float:
    """Epoch seconds of a ``ts`` value, checked against the receive time; raises _Reject."""
    if isinstance(raw, str):
        if not RFC3339.match(raw):
            raise _Reject("bad_timestamp", f"ts {raw[:60]!r} is not an RFC 3339 time (2026-12-01T12:00:00Z)")
        try:
            value = datetime.fromisoformat(raw.upper().replace(" ", "T").replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError):
            raise _Reject("bad_timestamp", f"ts {raw[:60]!r} is not a valid date and time") from None
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
        if not math.isfinite(value):
            raise _Reject("bad_timestamp", "ts is not a finite number")
    elif raw is None:
        raise _Reject("bad_timestamp", "ts is missing")
    else:
        raise _Reject("bad_timestamp", f"ts must be a string or a number, got {type(raw).__name__}")
    return check_time(value, received_at, limits)


def check_time(value: float, received_at: float, limits: Limits) -> float:
    if value > received_at + limits.max_future_s:
        raise _Reject(
            "timestamp_in_future", f"device time {_iso(value)} is {value - received_at:.6g} s ahead of the receive time"
        )
    if value < received_at - limits.max_age_s:
        raise _Reject(
            "timestamp_too_old", f"device time {_iso(value)} is more than {limits.max_age_s / 86400:g} days old"
        )
    return value


def _iso(epoch: float) -> str:
    try:
        return datetime.fromtimestamp(epoch, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return f"{epoch:.6g} s"


def _has_nul(value: Any) -> bool:
    """Whether a decoded JSON value holds U+0000 anywhere (PostgreSQL's text and jsonb refuse it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _value(name: str, raw: Any) -> float:
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, (int, float)):
        value = float(raw)
        if math.isfinite(value):
            return value
    raise _Reject("value_not_number", f"{name}: {str(raw)[:60]!r} is not a number")


def _reading(
    time: float,
    name: Any,
    raw: Any,
    catalogue: dict[str, Metric],
    out: Decoded,
    *,
    factor: float = 1.0,
    offset: float = 0.0,
) -> None:
    metric = catalogue.get(name) if isinstance(name, str) else None
    if metric is None:
        out.rejections.append(Rejection("unknown_metric", f"metric {str(name)[:60]!r} is not in the catalogue"))
        return
    try:
        value = _value(metric.name, raw) * factor + offset
    except _Reject as exc:
        out.rejections.append(Rejection(exc.reason, exc.detail))
        return
    if not metric.min_value <= value <= metric.max_value:
        out.rejections.append(
            Rejection(
                "value_out_of_range", f"{metric.name}: {value:g} is outside {metric.min_value:g}..{metric.max_value:g}"
            )
        )
        return
    out.readings.append((time, metric.metric_id, value))


def _entry(entry: Any, received_at: float, catalogue: dict[str, Metric], limits: Limits, out: Decoded) -> None:
    if not isinstance(entry, dict):
        raise _Reject("bad_schema", f"a reading must be an object, got {type(entry).__name__}")
    metrics = entry.get("metrics")
    if not isinstance(metrics, dict):
        raise _Reject("bad_schema", "a reading needs a 'metrics' object")
    if not metrics or len(metrics) > limits.max_metrics:
        raise _Reject("bad_schema", f"a reading needs 1 to {limits.max_metrics} metrics, got {len(metrics)}")
    try:
        time = parse_time(entry.get("ts"), received_at, limits)
    except _Reject as exc:
        out.rejections.append(Rejection(exc.reason, exc.detail))
        return
    append = out.readings.append
    for name, raw in metrics.items():
        metric = catalogue.get(name)
        # Fast path: a known metric with a plain in-range number (bool is an int subclass: not here).
        if (
            metric is not None
            and (type(raw) is float or type(raw) is int)
            and metric.min_value <= raw <= metric.max_value
        ):
            append((time, metric.metric_id, float(raw)))
        else:
            _reading(time, name, raw, catalogue, out)


def _senml(records: list[Any], received_at: float, catalogue: dict[str, Metric], limits: Limits, out: Decoded) -> None:
    if not records:
        raise _Reject("bad_schema", "an empty SenML pack")
    if len(records) > limits.max_batch_entries:
        raise _Reject("batch_too_large", f"{len(records)} SenML records; the limit is {limits.max_batch_entries}")
    base_name, base_time = "", 0.0
    for record in records:
        if not isinstance(record, dict):
            raise _Reject("bad_schema", "SenML records must be objects")
        if "bn" in record:
            if not isinstance(record["bn"], str):
                raise _Reject("bad_schema", "SenML bn must be a string")
            base_name = record["bn"]
        if "bt" in record:
            bt = record["bt"]
            if isinstance(bt, bool) or not isinstance(bt, (int, float)) or not math.isfinite(bt):
                out.rejections.append(Rejection("bad_timestamp", "SenML bt must be a finite number"))
                return
            base_time = float(bt)
        n = record.get("n", "")
        if not isinstance(n, str):
            raise _Reject("bad_schema", "SenML n must be a string")
        name = _SENML_PREFIX.sub("", base_name + n)
        t = record.get("t", 0.0)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            out.rejections.append(Rejection("bad_timestamp", f"{name}: SenML t must be a finite number"))
            continue
        when = base_time + float(t)
        if abs(when) < SENML_RELATIVE_LIMIT:
            when += received_at
        try:
            when = check_time(when, received_at, limits)
        except _Reject as exc:
            out.rejections.append(Rejection(exc.reason, exc.detail))
            continue
        if "vs" in record or "vd" in record:
            out.rejections.append(
                Rejection("unsupported_value", f"{name}: SenML string and data values are not accepted")
            )
            continue
        if "v" in record:
            raw = record["v"]
            if isinstance(raw, bool):
                out.rejections.append(Rejection("value_not_number", f"{name}: v must be a number"))
                continue
        elif "vb" in record:
            raw = record["vb"]
            if not isinstance(raw, bool):
                out.rejections.append(Rejection("value_not_number", f"{name}: vb must be true or false"))
                continue
        else:
            out.rejections.append(Rejection("value_not_number", f"{name}: the record has no value"))
            continue
        factor, offset = 1.0, 0.0
        unit = record.get("u")
        metric = catalogue.get(name)
        if unit is not None and metric is not None and unit != metric.senml_unit:
            conversion = CONVERSIONS.get(unit) if isinstance(unit, str) else None
            if conversion is None or conversion[0] != metric.senml_unit:
                out.rejections.append(
                    Rejection("unit_mismatch", f"{name}: unit {str(unit)[:20]!r}, expected {metric.senml_unit!r}")
                )
                continue
            _, factor, offset = conversion
        _reading(when, name, raw, catalogue, out, factor=factor, offset=offset)


def _telemetry(doc: Any, received_at: float, catalogue: dict[str, Metric], limits: Limits, out: Decoded) -> None:
    if isinstance(doc, list):
        _senml(doc, received_at, catalogue, limits, out)
    elif isinstance(doc, dict) and "batch" in doc:
        batch = doc["batch"]
        if not isinstance(batch, list) or not batch:
            raise _Reject("bad_schema", "'batch' must be a non-empty list of readings")
        if len(batch) > limits.max_batch_entries:
            raise _Reject("batch_too_large", f"{len(batch)} entries; the limit is {limits.max_batch_entries}")
        for number, entry in enumerate(batch, start=1):
            try:
                _entry(entry, received_at, catalogue, limits, out)
            except _Reject as exc:
                out.rejections.append(Rejection(exc.reason, f"batch entry {number}: {exc.detail}"))
    else:
        _entry(doc, received_at, catalogue, limits, out)


def _status(payload: bytes, doc: Any, received_at: float, limits: Limits) -> Status:
    text = payload.strip().lower()
    if text in (b"online", b"offline"):
        return Status(time=received_at, online=text == b"online", reason=None)
    if not isinstance(doc, dict):
        raise _Reject("bad_status", "status must be 'online', 'offline' or an object with 'state'")
    state = doc.get("state")
    if state not in ("online", "offline"):
        raise _Reject("bad_status", f"state {str(state)[:40]!r} is neither 'online' nor 'offline'")
    reason = doc.get("reason")
    if _has_nul(reason):
        raise _Reject("bad_status", "reason holds U+0000, which cannot be stored")
    time = parse_time(doc["ts"], received_at, limits) if "ts" in doc else received_at
    return Status(time=time, online=state == "online", reason=str(reason)[:200] if reason is not None else None)


def _event(doc: Any, received_at: float, limits: Limits) -> Event:
    if not isinstance(doc, dict):
        raise _Reject("bad_schema", "an event must be an object")
    name = doc.get("event")
    if name not in EVENTS:
        raise _Reject("unknown_event", f"event {str(name)[:40]!r} is not one of {', '.join(sorted(EVENTS))}")
    time = parse_time(doc.get("ts"), received_at, limits)
    value = doc.get("value")
    if value is not None:
        value = _value(str(name), value)
    detail = doc.get("detail", {})
    if not isinstance(detail, dict):
        raise _Reject("bad_schema", "event detail must be an object")
    if _has_nul(detail):
        raise _Reject("bad_schema", "event detail holds U+0000, which cannot be stored")
    return Event(time=time, event=str(name), value=value, detail=detail)


def decode(topic: str, payload: bytes, received_at: float, catalogue: dict[str, Metric], limits: Limits) -> Decoded:
    """Everything one message carried, or why not. Never raises."""
    try:
        return _decode(topic, payload, received_at, catalogue, limits)
    except Exception as exc:  # a decoder bug must dead-letter the message, not stop ingest
        return Decoded(topic=None, rejections=[Rejection("decoder_error", f"{type(exc).__name__}: {exc}"[:300])])


def _decode(topic: str, payload: bytes, received_at: float, catalogue: dict[str, Metric], limits: Limits) -> Decoded:
    parsed = parse_topic(topic)
    if isinstance(parsed, Rejection):
        return Decoded(topic=None, rejections=[parsed])
    out = Decoded(topic=parsed)
    if len(payload) > limits.max_payload_bytes:
        out.rejections.append(
            Rejection("payload_too_large", f"{len(payload)} bytes; the limit is {limits.max_payload_bytes}")
        )
        return out
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        if parsed.channel == "status" and payload.strip().lower() in (b"online", b"offline"):
            doc = None
        else:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError as bad:
                out.rejections.append(Rejection("bad_encoding", f"byte {bad.start} is not UTF-8"))
                return out
            if parsed.channel == "status":
                out.rejections.append(Rejection("bad_status", "status must be 'online', 'offline' or a JSON object"))
            else:
                out.rejections.append(Rejection("malformed_json", str(exc)[:200]))
            return out
    try:
        if parsed.channel == "telemetry":
            _telemetry(doc, received_at, catalogue, limits, out)
        elif parsed.channel == "status":
            out.status = _status(payload, doc, received_at, limits)
        else:
            out.event = _event(doc, received_at, limits)
    except _Reject as exc:
        out.readings.clear()
        out.rejections.insert(0, Rejection(exc.reason, exc.detail))
    return out

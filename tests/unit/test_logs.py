"""Structured logs: one JSON object per line, with the exception when there is one."""

from __future__ import annotations

import json
import logging

from floor.logs import JsonFormatter


def test_json_lines_carry_level_logger_message_and_exception() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("lykta.ingest", logging.WARNING, __file__, 1, "held %d messages", (12,), None)
    entry = json.loads(formatter.format(record))
    assert entry["level"] == "warning"
    assert entry["logger"] == "lykta.ingest"
    assert entry["message"] == "held 12 messages"
    assert entry["time"].endswith("+00:00")
    import sys

    try:
        int("broken")
    except ValueError:
        failed = logging.LogRecord("lykta", logging.ERROR, __file__, 2, "failed", (), sys.exc_info())
    assert "ValueError: invalid literal" in json.loads(formatter.format(failed))["exception"]

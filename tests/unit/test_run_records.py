"""Turning a run's raw output lines into stored records, and records into `al logs` lines."""

from __future__ import annotations

import json
import time
from datetime import datetime

from action_llama.runs.records import format_record, parse_line

TS = 1_700_000_000_000  # ms
CLOCK = datetime.fromtimestamp(TS / 1000).strftime("%H:%M:%S")


def test_protocol_line_keeps_its_fields_without_the_marker() -> None:
    """A JSON protocol line becomes its own record, minus the `_log` marker."""
    line = json.dumps({"_log": True, "level": "warn", "msg": "slow", "ts": TS, "step": 3})
    assert parse_line(line) == {"level": "warn", "msg": "slow", "ts": TS, "step": 3}


def test_protocol_line_gets_default_level_msg_and_time() -> None:
    """A protocol line missing level, msg or ts gets info, "" and the current time."""
    before = int(time.time() * 1000)
    record = parse_line('{"_log": true}')
    after = int(time.time() * 1000)
    assert record["level"] == "info"
    assert record["msg"] == ""
    assert before <= record["ts"] <= after
    assert "_log" not in record


def test_plain_text_line_is_kept_as_raw_message() -> None:
    """A line that is not JSON is stored verbatim as an info message marked raw."""
    record = parse_line("Hello from agent hello\r")
    assert record["msg"] == "Hello from agent hello"
    assert record["level"] == "info"
    assert record["raw"] is True
    assert isinstance(record["ts"], int)


def test_broken_json_line_is_kept_as_raw_message() -> None:
    """A line that starts like JSON but does not parse is kept as text."""
    record = parse_line('{"_log": true, "msg": ')
    assert record["msg"] == '{"_log": true, "msg": '
    assert record["raw"] is True


def test_json_without_log_marker_is_kept_as_raw_message() -> None:
    """JSON a program printed (no `_log` marker) is kept as text, not taken for a record."""
    line = '{"level": "error", "msg": "not ours"}'
    record = parse_line(line)
    assert record["msg"] == line
    assert record["level"] == "info"
    assert record["raw"] is True


def test_format_record_shows_time_level_message_and_fields() -> None:
    """A record renders as `HH:MM:SS level message key=value` with JSON-quoted values."""
    record = {"ts": TS, "level": "info", "msg": "started", "agent": "dev", "n": 2}
    assert format_record(record) == f'{CLOCK} info  started agent="dev" n=2'


def test_format_record_shows_script_output_as_printed() -> None:
    """Output of the agent's script or hooks is shown as printed, without extra fields."""
    record = {"ts": TS, "level": "info", "msg": "  indented  ", "source": "script", "x": 1}
    assert format_record(record) == f"{CLOCK} info    indented  "


def test_format_record_of_raw_line_has_no_raw_field() -> None:
    """A raw text line renders as its text, without a raw=true field."""
    record = parse_line("plain text")
    assert format_record(record).endswith(" info  plain text")


def test_format_record_colors_only_when_asked() -> None:
    """Errors are red with color on, and no escape codes appear with color off."""
    record = {"ts": TS, "level": "error", "msg": "boom"}
    assert "\x1b[31m" in format_record(record, color=True)
    assert "\x1b" not in format_record(record)


def test_format_record_without_time_leaves_clock_empty() -> None:
    """A record with no integer ts renders without a clock rather than failing."""
    assert format_record({"msg": "hi"}) == " info  hi"

"""Process-wide logging: JSON lines on stderr for machines, or plain text for people.

Called once at the CLI edge. JSON lines carry ``ts``, ``level``, ``logger``, ``msg`` and any
``extra=`` fields, so a log shipper can index ``partition`` or ``offset`` without parsing
prose. Stdlib ``logging`` only: no dependency for something every service needs.

Secrets never reach a line: ``redact_secrets`` registers the values in use (the SASL and
key passwords of the settings; ``kafka_args.kafka_settings`` does it for every command) and
both formatters replace any occurrence, in the message, an ``extra`` or a traceback, by
``***``.

>>> import io, json, logging
>>> stream = io.StringIO()
>>> configure_logging("INFO", "json", stream=stream)
>>> logging.getLogger("streamrec.demo").info("assigned", extra={"partition": 3})
>>> record = json.loads(stream.getvalue())
>>> record["msg"], record["partition"], record["level"]
('assigned', 3, 'INFO')
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import IO, Iterable

# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
_FORMATS = ("json", "text")
_OURS = "_streamrec_handler"
REDACTED = "***"
_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def redact_secrets(values: Iterable[str]) -> None:
    """Add ``values`` to the secrets every formatter of ours hides (empty ones ignored)."""
    global _secrets
    with _secrets_lock:
        known = set(_secrets) | {v for v in values if v}
        # Longest first: a secret containing another is hidden whole.
        _secrets = tuple(sorted(known, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(value: object) -> object:
    if not _secrets or value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact_value(v) for v in value]
    return redact(str(value))  # anything else is written with str() anyway


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


def _utc_timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds: sortable, and unambiguous across hosts."""
    millis = int(created % 1 * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record; values that JSON cannot hold are written with ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)  # an extra never overwrites the four core fields
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        if _secrets:  # before encoding: JSON escapes would hide a secret from a text search
            entry = {k: _redact_value(v) for k, v in entry.items()}
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: msg key=value ...`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            head, sep, tail = line.partition("\n")  # keep extras on the message line
            head += " " + " ".join(f"{k}={v}" for k, v in extras.items())
            line = head + sep + tail
        return redact(line)


def configure_logging(level: str | int = "INFO", fmt: str = "json",
                      stream: IO[str] | None = None) -> None:
    """Send every logger's records to ``stream`` (default stderr) in ``fmt``.

    Replaces the handler an earlier call installed, so calling it twice (tests, ``demo``
    then a service) does not print each line twice; handlers others added are kept.
    Raises ``ValueError`` on an unknown level or format.
    """
    if fmt not in _FORMATS:
        raise ValueError(f"log format must be one of {_FORMATS}, got {fmt!r}")
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLineFormatter() if fmt == "json" else TextFormatter())
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)  # only ours: pytest's capture handlers must survive
    root.addHandler(handler)
    root.setLevel(numeric)
    # kafka-python narrates every connection at INFO; show it only when debugging.
    logging.getLogger("kafka").setLevel(logging.NOTSET if numeric <= logging.DEBUG
                                        else max(numeric, logging.WARNING))

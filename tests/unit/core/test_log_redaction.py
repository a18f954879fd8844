"""No secret reaches a log line: message, extras, tracebacks, JSON-escaped or not."""

from __future__ import annotations

import io
import json
import logging

import pytest

from streamrec.app import logging_setup
from streamrec.config import Settings
from streamrec.app.kafka_args import kafka_settings

SECRET = 'S3cr"et\\pw'  # a quote and a backslash: JSON would escape them


@pytest.fixture
def logged(monkeypatch):
    """Log through our handler with ``SECRET`` registered; yields (logger, output)."""
    monkeypatch.setattr(logging_setup, "_secrets", ())
    logging_setup.redact_secrets([SECRET, ""])
    streams = {}

    def configure(fmt: str) -> tuple[logging.Logger, io.StringIO]:
        stream = io.StringIO()
        logging_setup.configure_logging("INFO", fmt, stream=stream)
        streams[fmt] = stream
        return logging.getLogger("streamrec.test-redaction"), stream

    yield configure
    logging_setup.configure_logging("INFO", "text", stream=io.StringIO())


def test_json_lines_redact_message_extras_and_tracebacks(logged):
    log, out = logged("json")
    log.info("connecting with %s", SECRET, extra={"config": {"sasl_plain_password": SECRET,
                                                           "nested": [SECRET, 3]},
                                                "plain": f"x{SECRET}y", "count": 7})
    try:
        raise RuntimeError(f"auth with {SECRET} failed")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    assert SECRET not in text and json.dumps(SECRET)[1:-1] not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["msg"] == "connecting with ***"
    assert first["config"] == {"sasl_plain_password": "***", "nested": ["***", 3]}
    assert (first["plain"], first["count"]) == ("x***y", 7)
    assert "auth with *** failed" in second["exc"]


def test_text_lines_redact_too(logged):
    log, out = logged("text")
    log.warning("password=%s", SECRET, extra={"other": SECRET})
    assert SECRET not in out.getvalue() and "password=***" in out.getvalue()


def test_kafka_library_logs_are_redacted(logged):
    log, out = logged("json")
    logging.getLogger("kafka.conn").warning("sasl config %r", {"password": SECRET})
    assert SECRET not in out.getvalue()


def test_settings_from_the_cli_edge_register_their_secrets(monkeypatch, tmp_path):
    import argparse

    monkeypatch.setattr(logging_setup, "_secrets", ())
    secret = tmp_path / "pw"
    secret.write_text("edge-secret-42\n")
    args = argparse.Namespace(security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                              sasl_username="app", sasl_password_file=str(secret))
    settings = kafka_settings(args)
    assert isinstance(settings, Settings)
    assert logging_setup.redact("x edge-secret-42 y") == "x *** y"


def test_nothing_registered_changes_nothing(monkeypatch):
    monkeypatch.setattr(logging_setup, "_secrets", ())
    assert logging_setup.redact("plain text") == "plain text"

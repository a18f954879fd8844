"""The metrics endpoint's exposure: bind address, idle and trickling connections dropped."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest

from streamrec.app.cli import build_parser
from streamrec.app.commands.core import settings_from_args
from streamrec.config import Settings
from streamrec.metrics import MetricsRegistry, MetricsServer


def _registry() -> MetricsRegistry:
    registry = MetricsRegistry()
    registry.counter("app_events_total", "Events seen.").inc(3)
    return registry


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection (recv returns b""), or None."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(1024):
            pass
    except socket.timeout:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_the_bind_address_is_honoured():
    # 127.0.0.0/8 is all loopback on Linux: bound to .2, the server must not answer on .1.
    with MetricsServer(_registry(), port=0, host="127.0.0.2") as server:
        assert server.host == "127.0.0.2"
        with urllib.request.urlopen(f"http://127.0.0.2:{server.port}/metrics", timeout=5) as r:
            assert b"app_events_total 3.0" in r.read()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_the_bind_address_comes_from_settings_and_the_cli_flag():
    assert Settings().metrics_host == "0.0.0.0"  # containers: scraped over their network
    assert Settings.from_env({"STREAMREC_METRICS_HOST": "127.0.0.1"}).metrics_host == "127.0.0.1"
    args = build_parser().parse_args(["ingest", "--metrics-host", "10.1.2.3"])
    assert settings_from_args(args).metrics_host == "10.1.2.3"


def test_an_idle_connection_is_dropped_while_others_are_served():
    with MetricsServer(_registry(), port=0, host="127.0.0.1", idle_timeout_s=2.0) as server:
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            opened = time.monotonic()
            time.sleep(0.1)  # the idle client holds its connection (and thread) now
            with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
                assert response.status == 200 and b"app_events_total" in response.read()
            # Served long before the idle connection's timeout: nobody waited for it.
            assert time.monotonic() - opened < 1.5, "another client waited for the idle one"
            assert _closed_within(idle, 6.0) is not None, "the idle connection was never dropped"
            # Dropped at its 2 s timeout: not before, and not at the 6 s the check waits.
            dropped_after = time.monotonic() - opened
            assert 1.5 < dropped_after < 4.0, f"dropped after {dropped_after:.2f} s"
        finally:
            idle.close()


def test_a_client_trickling_its_request_is_dropped_at_the_deadline():
    with MetricsServer(_registry(), port=0, host="127.0.0.1", idle_timeout_s=0.6) as server:
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            started = time.monotonic()
            # One byte every 0.2 s: never idle for a whole socket timeout.
            for byte in b"GET /metrics HTTP/1.0\r\nX-Padding: " + b"a" * 100:
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    break  # the server closed it
                time.sleep(0.2)
                if time.monotonic() - started > 5:
                    break
            assert time.monotonic() - started < 2.5, "the trickling client was never dropped"
            assert _closed_within(slow, 2.0) is not None
        finally:
            slow.close()


def test_a_prompt_scrape_still_answers_with_a_short_timeout():
    with MetricsServer(_registry(), port=0, host="127.0.0.1", idle_timeout_s=0.2) as server:
        for _ in range(20):
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as response:
                assert response.status == 200


def test_a_non_positive_timeout_is_refused():
    with pytest.raises(ValueError):
        MetricsServer(_registry(), port=0, host="127.0.0.1", idle_timeout_s=0)

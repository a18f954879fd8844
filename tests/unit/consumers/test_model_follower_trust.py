"""The model follower under hostile ``models`` messages and a failing broker (issue 9).

Driven through ``accept``/``handle`` and a fake consumer: no broker. The broker version is
``tests/faults/test_model_follower_hostile.py``.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from streamrec.consumers.model_follower import CURRENT_KEY, ModelFollower
from streamrec.export.store import publish_message
from streamrec.config import Settings
from streamrec.metrics import MetricsRegistry
from streamrec.signing import MODELS_KIND, sign_headers

SECRET = "s3cret"


def follower_for(root: Path, secret: str = "", served: list | None = None) -> ModelFollower:
    served = served if served is not None else []
    return ModelFollower(Settings(model_store=str(root), control_secret=secret),
                         lambda model, message: served.append(model.version),
                         lambda version, reason: None, threads=1, warmup=1)


def record(value: bytes, headers: tuple = (), key: bytes = CURRENT_KEY) -> Any:
    return SimpleNamespace(key=key, value=value, headers=list(headers))


def test_a_message_pointing_outside_the_store_is_not_served(store, tmp_path: Path) -> None:
    root, message = store
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(root / message["version"], elsewhere / message["version"])
    rogue = {**message, "path": str(elsewhere / message["version"])}
    follower = follower_for(root)
    assert follower.handle([json.dumps(rogue).encode()]) is None
    assert follower.outcomes == {"outside_store": 1} and follower.current_version is None
    assert follower.handle([json.dumps(message).encode()]) == message["version"]


def test_a_2_kb_nested_value_is_skipped_and_the_next_model_still_swaps_in(store) -> None:
    root, message = store
    follower = follower_for(root)
    nested = b"[" * 1000 + b"]" * 1000
    assert len(nested) == 2000
    assert follower.handle([nested]) is None
    assert follower.outcomes == {"bad_message": 1}
    assert follower.handle([json.dumps(message).encode()]) == message["version"]


def test_with_a_secret_unsigned_and_forged_messages_are_not_served(store) -> None:
    root, message = store
    value = json.dumps(message).encode()
    served: list[str] = []
    follower = follower_for(root, SECRET, served)
    registry = MetricsRegistry()
    follower.bind_metrics(registry)
    drift_signed = sign_headers((), SECRET, MODELS_KIND, b"drift", value)  # other key
    forged = sign_headers((), "not the secret", MODELS_KIND, CURRENT_KEY, value)
    assert follower.accept([record(value), record(value, forged),
                            record(value, drift_signed)]) is None
    assert served == [] and follower.outcomes == {"bad_signature": 3}
    assert 'streamrec_model_follower_skipped_total{reason="bad_signature"} 3' in \
        registry.render()
    signed = sign_headers((), SECRET, MODELS_KIND, CURRENT_KEY, value)
    assert follower.accept([record(value, signed)]) == message["version"]
    assert served == [message["version"]]


def test_without_a_secret_signatures_are_not_needed(store) -> None:
    root, message = store
    follower = follower_for(root)
    assert follower.accept([record(json.dumps(message).encode())]) == message["version"]


class FlakyConsumer:
    """Stands in for the models consumer: fails ``failures`` polls, then returns ``batch``."""

    def __init__(self, failures: int, batch: list) -> None:
        self.failures, self.batch, self.polls, self.closed = failures, batch, 0, False

    def poll(self, timeout_ms: int) -> dict:
        self.polls += 1
        if self.polls <= self.failures:
            raise ConnectionError("broker went away")
        time.sleep(timeout_ms / 1000)
        batch, self.batch = self.batch, []
        return {"tp": batch} if batch else {}

    def close(self) -> None:
        self.closed = True


def test_poll_failures_rebuild_the_consumer_and_readiness_reports_them(
        store, monkeypatch: pytest.MonkeyPatch) -> None:
    root, message = store
    follower = follower_for(root)
    follower.poll_timeout_ms = 10
    consumers: list[FlakyConsumer] = []
    gate = threading.Event()

    def connect() -> None:
        if len(consumers) == 4:
            gate.wait(10)  # hold the fifth connection so health can be read while it fails
        consumer = FlakyConsumer(1 if len(consumers) < 4 else 0,
                                 [record(json.dumps(message).encode())])
        consumers.append(consumer)
        follower._consumer = consumer  # type: ignore[assignment]

    monkeypatch.setattr(follower, "_connect", connect)
    monkeypatch.setattr("streamrec.consumers.model_follower.MAX_BACKOFF_S", 0.05)
    assert follower.health()["status"] == "unhealthy"  # not started
    follower.start()
    try:
        deadline = time.monotonic() + 10
        while follower.consecutive_poll_failures < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        health = follower.health()
        assert health["status"] == "unhealthy" and "polls" in str(health["reason"])
        assert all(c.closed for c in consumers)  # each broken consumer was closed
        gate.set()
        assert follower.wait_for_version(message["version"], timeout=20)
        assert follower.health()["status"] == "ok" and follower.failures["poll_ConnectionError"] == 4
    finally:
        gate.set()
        follower.close()
    assert follower.health()["status"] == "ok"  # stopped on purpose: not a failure


def test_a_crashing_handler_is_counted_and_following_goes_on(store, monkeypatch) -> None:
    root, message = store
    follower = follower_for(root)
    calls = {"n": 0}
    real_try = follower._try

    def crash_once(value: bytes) -> str | None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("hostile")
        return real_try(value)

    monkeypatch.setattr(follower, "_try", crash_once)
    value = json.dumps(message).encode()
    assert follower.handle([value]) is None
    assert follower.outcomes == {"handler_error": 1} and follower.failures == {"handler": 1}
    assert follower.handle([value]) == message["version"]


def test_the_scorer_is_ready_only_while_its_follower_is_healthy(store) -> None:
    from streamrec.app.commands.core import _readiness

    root, _ = store
    follower = follower_for(root)
    from streamrec.transport.service_health import ServiceProgress
    runner = SimpleNamespace(ready=threading.Event(), stopping=False,
                             progress=ServiceProgress(stall_after_s=60, broker_silence_s=30))
    assert _readiness(runner, follower.health)["status"] == "unhealthy"  # not restored yet
    runner.ready.set()
    body = _readiness(runner, follower.health)  # restored, but the follower never started
    assert body["status"] == "unhealthy" and "not running" in str(body["reason"])
    follower._stop.set()  # a follower closed on purpose is no failure
    assert _readiness(runner, follower.health)["status"] == "ok"
    # Without a follower, the loop's own progress decides (the body carries its measures).
    assert _readiness(runner, None)["status"] == "ok"


def test_whatever_escapes_the_loop_restarts_it(store, monkeypatch) -> None:
    root, message = store
    follower = follower_for(root)
    follower.poll_timeout_ms = 10
    monkeypatch.setattr("streamrec.consumers.model_follower.MAX_BACKOFF_S", 0.05)
    monkeypatch.setattr(follower, "_connect", lambda: setattr(
        follower, "_consumer", FlakyConsumer(0, [record(json.dumps(message).encode())])))
    real_follow, rounds = follower._follow, []

    def break_once() -> None:
        rounds.append(1)
        if len(rounds) == 1:
            raise RuntimeError("a bug out of the loop's own nets")
        real_follow()

    monkeypatch.setattr(follower, "_follow", break_once)
    follower.start()
    try:
        assert follower.wait_for_version(message["version"], timeout=20)
        assert follower.failures == {"thread": 1} and follower.health()["status"] == "ok"
    finally:
        follower.close()


def test_with_a_secret_a_replayed_old_announcement_cannot_roll_the_scorer_back(store) -> None:
    root, message = store
    follower = follower_for(root, SECRET)
    shutil.copytree(root / "v000001", root / "v000002")
    manifest = json.loads((root / "v000002" / "manifest.json").read_text())
    (root / "v000002" / "manifest.json").write_text(json.dumps({**manifest, "version": "v000002"}))
    newer = publish_message({**manifest, "version": "v000002"}, root, published_at=200.0)
    older = {**message, "published_at": 100.0}

    def signed(m: dict) -> Any:
        value = json.dumps(m).encode()
        return record(value, sign_headers((), SECRET, MODELS_KIND, CURRENT_KEY, value))

    # A restart reads history in one poll: the replayed old message sits at the newest
    # offset, but the latest publication wins.
    assert follower.accept([signed(newer), signed(older)]) == "v000002"
    assert follower.accept([signed(older)]) is None  # the replay again, on its own
    assert follower.outcomes["stale_announcement"] == 1 and follower.current_version == "v000002"
    rollback = {**message, "published_at": 300.0}  # an operator re-publishes v000001
    assert follower.accept([signed(rollback)]) == "v000001"

"""The scorer's model follower on a real broker under hostile ``models`` messages (issue 9).

A 2 KB nested value, a message naming a copy of a model outside the store, and (with a
control secret) unsigned and forged messages: none is served, each is counted, the
follower thread keeps running, and it still swaps to the next valid model.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from streamrec.consumers.model_follower import CURRENT_KEY, ModelFollower
from streamrec.export.release import build_release, publish_release
from streamrec.export.store import ModelStore, publish_message
from streamrec.export.train import train_model
from streamrec.config import Settings
from streamrec.signing import MODELS_KIND, sign_headers
from support import produce_raw

pytestmark = pytest.mark.kafka

SECRET = "fault-test-secret"


def publish_two(store: ModelStore) -> list[dict]:
    sequences = [[f"i{(u * 7 + s) % 80}" for s in range(12)] for u in range(40)]
    messages = []
    for seed in range(2):
        trained = train_model(sequences, seed=seed, epochs=1, dim=8, max_len=12, n_blocks=1,
                              n_heads=1, threads=1, on_epoch=None)
        manifest = publish_release(build_release(trained, exporter="torchscript", threads=1),
                                   store)
        messages.append(publish_message(manifest, store.root))
    return messages


def wait_for(condition, timeout_s: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("secret", ["", SECRET])
def test_hostile_models_messages_are_skipped_and_the_next_model_still_swaps_in(
        kafka_settings: Settings, tmp_path: Path, secret: str) -> None:
    settings = kafka_settings.replace(model_store=str(tmp_path / "store"), control_secret=secret)
    store = ModelStore(tmp_path / "store")
    first, second = publish_two(store)
    elsewhere = tmp_path / "elsewhere" / second["version"]
    shutil.copytree(second["path"], elsewhere)
    rogue = {**second, "path": str(elsewhere)}  # self-consistent, but outside the store

    def send(message: dict | bytes, sign_with: str | None = secret) -> None:
        value = message if isinstance(message, bytes) else json.dumps(message).encode()
        headers = list(sign_headers((), sign_with, MODELS_KIND, CURRENT_KEY, value)) \
            if sign_with else None
        produce_raw(settings, settings.topics.models, [(CURRENT_KEY, value)], headers=headers)

    served: list[str] = []
    follower = ModelFollower(settings, lambda model, message: served.append(model.version),
                             lambda version, reason: None, threads=1, warmup=1,
                             poll_timeout_ms=100).start()
    try:
        send(first)
        assert follower.wait_for_version(first["version"], timeout=60)
        send(b"[" * 1000 + b"]" * 1000)  # 2 KB of nesting
        send(rogue)
        hostile = 2
        if secret:
            send(second, sign_with=None)  # unsigned
            send(second, sign_with="not the secret")  # forged
            hostile += 2
        assert wait_for(lambda: sum(v for k, v in follower.outcomes.items()
                                    if k not in ("served",)) >= hostile), follower.outcomes
        assert follower.current_version == first["version"]
        assert follower.outcomes["bad_message"] == 1 and follower.outcomes["outside_store"] == 1
        if secret:
            assert follower.outcomes["bad_signature"] == 2
        assert follower.health()["status"] == "ok"
        send(second)
        assert follower.wait_for_version(second["version"], timeout=60), follower.outcomes
        assert served == [first["version"], second["version"]]
        assert follower.failures == {}
    finally:
        follower.close()

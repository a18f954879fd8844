"""``streamrec train --once`` on a real broker, and a ``ModelFollower`` receiving its model.

Clicks are produced to ``clicks``; the trainer, run as an operator would (its own process),
must publish a ``current`` message on ``models`` whose model verifies; a follower must hand
that model over, then reject a tampered second version and keep serving the first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from streamrec.consumers.model_follower import ModelFollower
from streamrec.export.store import load_verified
from streamrec.producers.synthetic import SyntheticStream
from streamrec.config import Settings
from streamrec.events import encode_click
from support import produce_raw, read_topic
from unit.consumers.trainer_helpers import tampered_copy

N_EVENTS = 5_000


def run_train_once(settings: Settings, store: Path) -> subprocess.CompletedProcess:
    # Tiny model and epochs: this checks the plumbing, not the model's quality or speed.
    return subprocess.run(
        [sys.executable, "-m", "streamrec.app.cli", "train", "--once", "--store", str(store),
         "--bootstrap-servers", settings.bootstrap_servers,
         "--topic-prefix", settings.topic_prefix, "--epochs", "2", "--dim", "16",
         "--blocks", "1", "--max-len", "20", "--exporter", "torchscript", "--min-events", "500"],
        capture_output=True, text=True, timeout=120)


def test_train_once_publishes_a_model_the_follower_serves(kafka_settings: Settings,
                                                          tmp_path: Path) -> None:
    settings = kafka_settings.replace(model_store=str(tmp_path / "store"))  # the follower's
    events = SyntheticStream(n_users=300, n_items=200, n_events=N_EVENTS, seed=5).events()
    produce_raw(settings, settings.topics.clicks,
                ((e.user_id.encode(), encode_click(e)) for e in events))

    result = run_train_once(settings, tmp_path / "store")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train epoch 2/2" in result.stderr  # progress output per epoch
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["promoted"] and outcome["version"] == "v000001", outcome

    records = read_topic(settings, settings.topics.models, expect=1, idle_s=0.5)
    assert [r.key for r in records] == [b"current"]
    message = json.loads(records[0].value)
    manifest = load_verified(message).manifest  # checksums and parity of the stored model
    offsets = manifest["data_window"]["offsets"]
    assert sum(end - start for start, end in offsets.values()) == N_EVENTS
    assert manifest["data_window"]["events"] == N_EVENTS
    assert manifest["metrics"]["ndcg@10"] >= 0.0

    served: list[str] = []
    rejected: list[tuple[str, str]] = []
    loaded_on: list[str] = []

    def on_model(model, msg) -> None:
        served.append(model.version)
        loaded_on.append(threading.current_thread().name)

    with ModelFollower(settings, on_model, lambda v, r: rejected.append((v, r)),
                       threads=1, warmup=1) as follower:
        assert follower.wait_for_version("v000001", timeout=30)
        assert loaded_on == ["model-follower"]  # off the caller's (the hot) path

        bad = tampered_copy(message, tmp_path / "store", "v000002")
        produce_raw(settings, settings.topics.models, [(b"current", json.dumps(bad).encode())])
        assert follower.wait_for_rejection("v000002", timeout=30)
        assert rejected[0][0] == "v000002" and rejected[0][1].startswith("checksum_mismatch")
        assert follower.current_version == "v000001" and served == ["v000001"]

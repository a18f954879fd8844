"""``Trainer`` end to end without Kafka: promote, warm start, reject, manifest contents."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from streamrec.consumers.train import CHECKPOINTS, Trainer
from streamrec.consumers.train_window import build_window
from streamrec.export.store import ModelStore, load_verified
from streamrec.records import Record
from unit.consumers.trainer_helpers import TINY, synthetic_window


def test_first_model_is_promoted_with_a_full_manifest(model_store) -> None:
    root, outcome = model_store
    assert outcome.reason == "no_current_model" and outcome.version == "v000001"
    verified = load_verified(outcome.message)  # checksums and parity of what was stored
    manifest = verified.manifest
    assert manifest["parent_version"] is None
    window = manifest["data_window"]
    assert window["topic"] == "clicks" and window["offsets"] == {"0": [0, 3000]}
    assert window["events"] == 3000
    assert window["event_time"]["min"] <= window["train_event_time"]["max"] \
        < window["holdout_event_time"]["min"] <= window["event_time"]["max"]
    assert 0.0 <= manifest["metrics"]["ndcg@10"] <= manifest["metrics"]["hr@10"] <= 1.0
    assert manifest["metrics"]["cases"] > 0
    assert (root / CHECKPOINTS / "v000001.pt").is_file()


def test_second_model_warm_starts_and_is_compared_with_the_current(model_store) -> None:
    root, first = model_store
    trainer = Trainer(dataclasses.replace(TINY, tolerance=1.0), ModelStore(root), on_epoch=None)
    current = trainer.load_current(first.message)
    assert current is not None and current.trained is not None  # weights for the warm start
    outcome = trainer.train(synthetic_window(seed=2), current)
    assert outcome.promoted and outcome.reason == "not_worse"
    manifest = load_verified(outcome.message).manifest
    assert manifest["parent_version"] == "v000001"
    assert manifest["model"]["training"]["warm_started"] is True
    assert manifest["metrics"]["current"]["version"] == "v000001"
    assert manifest["metrics"]["current"]["cases"] == manifest["metrics"]["cases"]


def test_a_worse_candidate_is_neither_stored_nor_published(model_store, caplog) -> None:
    root, first = model_store
    store = ModelStore(root)
    before = store.versions()
    # A negative tolerance demands a gain no candidate can make: a rejection, for sure.
    trainer = Trainer(dataclasses.replace(TINY, tolerance=-1.0), store, on_epoch=None)
    outcome = trainer.train(synthetic_window(seed=3), trainer.load_current(first.message))
    assert not outcome.promoted and outcome.reason == "worse_than_current"
    assert outcome.message is None and outcome.version is None
    assert store.versions() == before
    assert "candidate rejected" in caplog.text
    assert json.loads(outcome.summary())["metrics"]["current"]["version"] == "v000001"


def test_too_few_events_skips_training(tmp_path: Path) -> None:
    outcome = Trainer(TINY, ModelStore(tmp_path)).train(synthetic_window(n_events=50), None)
    assert (outcome.promoted, outcome.reason) == (False, "too_few_events")
    assert ModelStore(tmp_path).versions() == []


def test_a_forget_since_the_current_model_forces_a_cold_start(model_store) -> None:
    root, first = model_store
    trainer = Trainer(dataclasses.replace(TINY, tolerance=1.0), ModelStore(root), on_epoch=None)
    base = synthetic_window()
    forget_ms = int(first.message["created_at"] * 1000) + 1
    records = [Record("clicks", 0, 10_000, b"u1", None, forget_ms,
                      (("streamrec.control", b"forget"),))]
    window = build_window(records, "clicks", base.offsets, 64 * 1024)
    window.events = [e for e in base.events if e.user_id != "u1"]
    outcome = trainer.train(window, trainer.load_current(first.message))
    assert load_verified(outcome.message).manifest["model"]["training"]["warm_started"] is False


def test_an_unloadable_current_model_counts_as_none(model_store, tmp_path: Path) -> None:
    root, first = model_store
    message = dict(first.message, path=str(tmp_path / "gone"))
    assert Trainer(TINY, ModelStore(root)).load_current(message) is None

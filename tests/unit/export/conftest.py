"""Tiny trained models shared by the export tests (built once per session: torch is slow)."""

from __future__ import annotations

import pytest

from streamrec.export.release import Release, build_release
from streamrec.export.store import ModelStore
from streamrec.export.train import TrainedModel, train_model
from unit.export.export_helpers import TINY, tiny_sequences


@pytest.fixture(scope="session")
def tiny_trained() -> TrainedModel:
    return train_model(tiny_sequences(), seed=3, **TINY)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_release(tiny_trained: TrainedModel) -> Release:
    # TorchScript here for speed; test_export_onnx_parity covers the dynamo path too.
    return build_release(tiny_trained, exporter="torchscript", threads=1)


@pytest.fixture()
def published(tmp_path, tiny_release: Release):
    """(store, manifest) with one published version."""
    from streamrec.export.release import publish_release

    store = ModelStore(tmp_path / "models")
    manifest = publish_release(tiny_release, store, data_window={
        "topic": "clicks", "offsets": {"0": [0, 1000]},
        "event_time": {"min": 0.0, "max": 1.0}, "events": 1000}, metrics={"ndcg@10": 0.1})
    return store, manifest

"""A tiny published model shared by the trainer and follower tests (torch is slow: once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.consumers.train import Trainer, TrainingOutcome
from unit.consumers.trainer_helpers import TINY, synthetic_window


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainingOutcome]:
    """(store root, outcome) of one promoted first model."""
    from streamrec.export.store import ModelStore

    root = tmp_path_factory.mktemp("store")
    outcome = Trainer(TINY, ModelStore(root), on_epoch=None).train(synthetic_window(), None)
    assert outcome.promoted and outcome.message is not None
    return root, outcome


@pytest.fixture()
def store(model_store, tmp_path: Path) -> tuple[Path, dict]:
    """(root, models message) of a private copy of the shared model: tests may add versions
    to it (the scorer loads only from its own store root)."""
    import json
    import shutil

    from streamrec.export.store import publish_message

    shared_root, outcome = model_store
    root = tmp_path / "store"
    shutil.copytree(shared_root / outcome.version, root / outcome.version)
    manifest = json.loads((root / outcome.version / "manifest.json").read_text())
    return root, publish_message(manifest, root)

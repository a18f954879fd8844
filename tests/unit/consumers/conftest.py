"""A tiny published model shared by the trainer and follower tests (torch is slow: once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.train import Trainer, TrainingOutcome
from unit.consumers.trainer_helpers import TINY, synthetic_window


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainingOutcome]:
    """(store root, outcome) of one promoted first model."""
    from export.store import ModelStore

    root = tmp_path_factory.mktemp("store")
    outcome = Trainer(TINY, ModelStore(root), on_epoch=None).train(synthetic_window(), None)
    assert outcome.promoted and outcome.message is not None
    return root, outcome

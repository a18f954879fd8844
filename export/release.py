"""From a trained model to a servable, published version: export → parity → store.

This is the one sequence the trainer service and replay both run, so a model that serves
anywhere has passed the same gate: ``onnx.checker``, then ONNX Runtime equal to torch within
1e-4 at batch sizes 1 and 32 (``ParityError`` otherwise), then an atomic, checksummed
folder in the ``ModelStore``.

>>> # trained = train_model(sequences)
>>> # release = build_release(trained)              # ExportError / ParityError on failure
>>> # manifest = publish_release(release, ModelStore("models"), parent_version="v000002",
>>> #                            data_window={...}, metrics={"ndcg@10": 0.05})
>>> # message = publish_message(manifest, "models")  # the value for the `models` topic
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from streamrec.export.onnx_export import export_onnx
from streamrec.export.parity import ParityFixture, check_parity
from streamrec.export.serving import OnnxSequenceModel
from streamrec.export.store import ModelStore
from streamrec.export.train import TrainedModel


@dataclass
class Release:
    """A trained model with its checked ONNX graph, not yet written anywhere."""

    trained: TrainedModel
    onnx_bytes: bytes
    exporter: str
    opset: int
    fixture: ParityFixture
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def item_table(self) -> np.ndarray:
        return self.trained.model.item_table().numpy().astype(np.float32, copy=True)

    def serving_model(self, threads: int = 2) -> OnnxSequenceModel:
        """An in-memory ONNX Runtime model (no store round-trip), e.g. for replay."""
        return OnnxSequenceModel.from_parts(
            self.onnx_bytes, self.trained.vocab.ids, self.item_table,
            self.trained.model.config.max_len, threads=threads)


def build_release(trained: TrainedModel, exporter: str = "auto", threads: int = 2) -> Release:
    """Export ``trained`` to ONNX and check parity; raises ``ExportError``/``ParityError``."""
    t0 = time.perf_counter()
    exported = export_onnx(trained.model, exporter)
    t1 = time.perf_counter()
    fixture = check_parity(trained.model, exported.onnx_bytes, threads=threads)
    t2 = time.perf_counter()
    return Release(trained, exported.onnx_bytes, exported.exporter, exported.opset, fixture,
                   {"export_s": t1 - t0, "parity_s": t2 - t1, "export_and_parity_s": t2 - t0})


def publish_release(release: Release, store: ModelStore, *, parent_version: str | None = None,
                    data_window: Mapping[str, Any] | None = None,
                    metrics: Mapping[str, Any] | None = None,
                    version: str | None = None) -> dict[str, Any]:
    """Write ``release`` as a new version of ``store``; return its manifest."""
    trained = release.trained
    training = {"seconds": round(trained.seconds, 3), "epochs": len(trained.epochs),
                "final_loss": trained.epochs[-1].loss if trained.epochs else None,
                "warm_started": trained.warm_started, "sequences": trained.train_sequences,
                "targets": trained.train_targets, **{
                    k: round(v, 4) for k, v in release.timings.items()}}
    return store.publish(
        release.onnx_bytes, trained.vocab.ids, release.item_table, release.fixture,
        model_config={**trained.model.config.to_dict(), "architecture": "sasrec",
                      "training": training},
        exporter=release.exporter, opset=release.opset, parent_version=parent_version,
        data_window=data_window, metrics=metrics, version=version)

"""Published models without torch: the real ``ModelStore.publish`` with a placeholder graph.

Ingest reads only a version's item ids and table, so the graph and parity fixture can be
stand-ins. Import as ``unit.core.model_store_fakes`` (the broker test uses it too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from streamrec.export.item_table import TABLE_FILE
from streamrec.export.parity import ParityFixture
from streamrec.export.store import ModelStore, publish_message
from streamrec.control import ControlMessage, adopt_model_requests


def publish_fake_model(root: Path, item_ids: Sequence[str], dim: int = 12, seed: int = 0,
                       version: str | None = None) -> dict[str, Any]:
    """Publish a version with random item vectors; return its ``models`` message."""
    vectors = np.random.default_rng(seed).normal(0.0, 0.3, (len(item_ids), dim))
    table = np.vstack([np.zeros((1, dim)), vectors]).astype(np.float32)  # row 0: padding
    manifest = ModelStore(root).publish(
        b"placeholder graph: ingest never runs it", list(item_ids), table, ParityFixture(),
        model_config={"max_len": 8}, exporter="fake", opset=17, version=version)
    return publish_message(manifest, root)


def adopt_messages(message: dict[str, Any], partitions: Sequence[int]) -> list[ControlMessage]:
    """The adopt-model control messages the trainer sends for ``message``."""
    return adopt_model_requests(json.dumps(message, sort_keys=True).encode(), partitions)


def corrupt_table(message: dict[str, Any]) -> None:
    """Flip one byte of the stored item table (after its checksum was recorded)."""
    path = Path(message["path"]) / TABLE_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))

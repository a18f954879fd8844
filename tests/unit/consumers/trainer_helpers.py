"""Tiny data, settings and a model-tampering helper for trainer and follower tests.

Import as ``unit.consumers.trainer_helpers`` (the integration test uses them too).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from streamrec.consumers.train import TrainerConfig
from streamrec.consumers.train_window import TrainingWindow, build_window
from streamrec.producers.synthetic import SyntheticStream
from streamrec.events import encode_click
from streamrec.records import Record

# Small and single-threaded: these tests check behaviour, never speed or quality.
TINY = TrainerConfig(epochs=2, warm_epochs=1, dim=16, max_len=12, n_blocks=1, n_heads=2,
                     threads=1, exporter="torchscript", min_events=100, min_cases=5)


def synthetic_window(n_events: int = 3_000, seed: int = 1) -> TrainingWindow:
    events = list(SyntheticStream(n_users=150, n_items=120, n_events=n_events,
                                  seed=seed).events())
    # Broker timestamps as a producer would give them: after the event time (a record
    # stamped in 1970 would carry events more than a day ahead of it: ts_out_of_range).
    start_ms = int(max(e.ts for e in events) * 1000) + 1000
    records = [Record("clicks", 0, i, e.user_id.encode(), encode_click(e), start_ms + i)
               for i, e in enumerate(events)]
    return build_window(records, "clicks", {0: (0, len(records))}, 64 * 1024)


def tampered_copy(message: dict[str, Any], root: Path, version: str) -> dict[str, Any]:
    """A ``models`` message for a copy of ``message``'s model renamed to ``version`` whose
    item table was altered after the manifest was written: it must be rejected."""
    from streamrec.export.store import MANIFEST, TABLE_FILE, publish_message

    target = root / version
    shutil.copytree(message["path"], target)
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["version"] = version
    (target / MANIFEST).write_text(json.dumps(manifest))
    data = bytearray((target / TABLE_FILE).read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the last float of the table
    (target / TABLE_FILE).write_bytes(bytes(data))
    return publish_message(manifest, root)

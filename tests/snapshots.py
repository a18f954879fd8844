"""Test helpers: the model snapshots a list of user-state records or outputs publishes."""

from __future__ import annotations

import hashlib
import pathlib
import pickle
from collections import Counter
from typing import Iterable

from streamrec.consumers.partition_models import SNAPSHOT_KEY, is_snapshot_key
from streamrec.consumers.snapshot_chunks import SnapshotLimits, SnapshotReader, chunk_key
from streamrec.consumers.snapshot_codec import (SNAPSHOT_FORMAT, PartitionSnapshot, SnapshotManifest,
                                      encode_manifest)
from streamrec.records import Output, Record


def as_records(items: Iterable[Record | Output]) -> list[Record]:
    """Outputs as the records a reader would meet (offsets in order); records unchanged."""
    return [Record(item.topic, item.partition or 0, n, item.key, item.value)
            if isinstance(item, Output) else item for n, item in enumerate(items)]


def published_snapshots(items: Iterable[Record | Output]
                        ) -> list[tuple[Record, PartitionSnapshot]]:
    """Each snapshot the records complete, with the record that named it, in order.

    Read exactly as a scorer reads ``user-state``; asserts nothing was skipped, since a
    test's own snapshots are always complete and valid.
    """
    skipped: Counter[tuple[str, str]] = Counter()
    reader = SnapshotReader("user-state", SnapshotLimits(), skipped)
    found = []
    for record in as_records(items):
        if is_snapshot_key(record.key):
            snapshot = reader.offer(record)
            if snapshot is not None:
                found.append((record, snapshot))
    assert not skipped, skipped
    return found


def snapshots_of(items: Iterable[Record | Output]) -> list[PartitionSnapshot]:
    return [snapshot for _, snapshot in published_snapshots(items)]


class TouchOnLoad:
    """Pickles to a call of ``Path.touch(marker)``: unpickling it creates the marker."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (pathlib.Path.touch, (self.marker,))


def planted_records(marker: pathlib.Path, topic: str, partition: int = 0, first: int = 0
                    ) -> list[Record]:
    """Every way a pickle could sit under the snapshot keys, as an attacker would write it."""
    bomb = pickle.dumps(TouchOnLoad(marker))
    old_format = pickle.dumps({"format": 1, "partition": partition, "offset": 0,
                               "blend": TouchOnLoad(marker)})
    # A manifest that names the pickle as its one chunk, digest and all.
    named = encode_manifest(SnapshotManifest(format=SNAPSHOT_FORMAT, partition=partition,
                                             snapshot_id=0, total_bytes=len(bomb),
                                             chunk_sha256=[hashlib.sha256(bomb).hexdigest()]))
    pairs = [(SNAPSHOT_KEY, bomb), (SNAPSHOT_KEY, old_format), (chunk_key(0), bomb),
             (SNAPSHOT_KEY, named)]
    return [Record(topic, partition, first + n, key, value)
            for n, (key, value) in enumerate(pairs)]

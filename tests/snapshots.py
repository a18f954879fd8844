"""Test helpers: the model snapshots a list of user-state records or outputs publishes."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from consumers.partition_models import is_snapshot_key
from consumers.snapshot_chunks import SnapshotLimits, SnapshotReader
from consumers.snapshot_codec import PartitionSnapshot
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

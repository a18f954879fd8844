"""Ingest's published outputs on a fixed log are frozen: speed work must not change a byte.

The digests below were computed from the ingest processor at commit 3723c1e (before the
issue-13 speed work) by this same test's ``_digests``; a change to them is a format or
behaviour change and needs its own commit saying why, never a speed-up.
"""

from __future__ import annotations

import hashlib

from streamrec.config import Settings
from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.partition_models import is_snapshot_key
from streamrec.events import encode_click
from streamrec.producers.synthetic import SyntheticStream
from streamrec.records import Record
from streamrec.transport.bus import partition_for

PARTITIONS = 3
# Small enough for a unit test, long enough for several online-model micro-batches per
# partition and a snapshot (snapshot_every=1000 here) in every partition.
N_EVENTS = 4_000
BATCH = 500

FROZEN_STATE_DIGEST = "bcb97a1b3b1f097c55c0ad73868c59e4e54ec3571bbdc028b1e1f90a930f5fb2"
FROZEN_STATE_COUNT = 1605


def _clicks(settings: Settings) -> list[Record]:
    stream = SyntheticStream(n_users=300, n_items=200, n_events=N_EVENTS, seed=7)
    offsets = [0] * PARTITIONS
    records = []
    for event in stream.events():
        key = event.user_id.encode()
        partition = partition_for(key, PARTITIONS)
        records.append(Record(settings.topics.clicks, partition, offsets[partition], key,
                              encode_click(event), timestamp_ms=int(event.ts * 1000)))
        offsets[partition] += 1
    return records


def _digests() -> tuple[str, int, int]:
    settings = Settings(snapshot_every=1_000, learn_every=64)
    ingest = IngestProcessor(settings)
    clicks = _clicks(settings)
    states = hashlib.sha256()
    count = 0
    snapshots = 0
    for start in range(0, len(clicks), BATCH):
        for output in ingest.process(clicks[start:start + BATCH]).outputs:
            if output.key is not None and is_snapshot_key(output.key):
                snapshots += 1
                continue
            states.update(repr((output.topic, output.key, output.partition)).encode())
            states.update(output.value or b"<tombstone>")
            count += 1
    return states.hexdigest(), count, snapshots


def test_published_user_states_are_byte_identical_to_the_frozen_run() -> None:
    digest, count, snapshots = _digests()
    assert snapshots > 0, "the log is meant to cover snapshots too"
    assert count == FROZEN_STATE_COUNT
    assert digest == FROZEN_STATE_DIGEST

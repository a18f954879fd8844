"""A partition's model snapshot on ``user-state``: chunk records, then the record naming them.

One snapshot can outgrow the topic's ``max.message.bytes`` (32 MB): 20k users with long
ids already pickled to 27 MB. So the payload (``streamrec.consumers.snapshot_codec``) is cut into
chunks of at most ``snapshot_chunk_bytes`` under ``__streamrec_snapshot__.chunk.<i>``,
followed by a manifest under ``__streamrec_snapshot__`` that names the set (snapshot id,
total size, sha256 of each chunk, format), then tombstones for the chunks of an older,
longer set, so compaction removes them. All of them are outputs of one ``process`` call,
pinned to the partition: one transaction, in this order.

A reader (``SnapshotReader``) buffers chunks per partition and decodes only when a
manifest arrives whose every chunk is buffered and matches its digest; the buffer is then
emptied either way. Anything else is a counted skip and the reader keeps its models.
Buffers are bounded (chunks per partition, bytes in all), so a hostile writer cannot make
a reader hold more than ``snapshot_max_bytes``. Every snapshot record is accounted for:
part of a decoded set, counted in ``skipped`` under ``(topic, reason)``, or still buffered.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass

from streamrec.consumers.snapshot_codec import (SNAPSHOT_FORMAT, BadSnapshot, PartitionSnapshot,
                                      SnapshotManifest, decode_manifest, decode_snapshot,
                                      encode_manifest)
from streamrec.config import Settings
from streamrec.records import Output, Record

log = logging.getLogger(__name__)

SNAPSHOT_KEY = b"__streamrec_snapshot__"
CHUNK_KEY_PREFIX = SNAPSHOT_KEY + b".chunk."
_MAX_INDEX_DIGITS = 9


@dataclass(frozen=True)
class SnapshotLimits:
    """Chunk size for writers; what a reader buffers at most (per partition / in all)."""

    chunk_bytes: int = 4 * 1024 * 1024
    max_chunks: int = 1024
    max_bytes: int = 1024 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> "SnapshotLimits":
        return cls(settings.snapshot_chunk_bytes, settings.snapshot_max_chunks,
                   settings.snapshot_max_bytes)


def is_snapshot_key(key: bytes | None) -> bool:
    """True for every key under the snapshot prefix (well-formed or not: all are ours)."""
    return key is not None and key.startswith(SNAPSHOT_KEY)


def chunk_key(index: int) -> bytes:
    return CHUNK_KEY_PREFIX + str(index).encode()


def _chunk_index(key: bytes) -> int | None:
    """``i`` of a well-formed ``...chunk.<i>`` key (decimal, no leading zero), else None."""
    digits = key[len(CHUNK_KEY_PREFIX):]
    if not key.startswith(CHUNK_KEY_PREFIX) or not 0 < len(digits) <= _MAX_INDEX_DIGITS:
        return None
    if not digits.isdigit() or (digits.startswith(b"0") and digits != b"0"):
        return None
    return int(digits)


def chunk_count(size: int, chunk_bytes: int) -> int:
    """Chunks a payload of ``size`` bytes takes (an empty one still takes one)."""
    return max(1, -(-size // chunk_bytes))


def snapshot_records(topic: str, partition: int, payload: bytes, snapshot_id: int,
                     chunk_bytes: int, previous_chunks: int) -> list[Output]:
    """The outputs that publish ``payload``: chunks, manifest, tombstones for stale chunks.

    ``previous_chunks`` is how many chunk keys the partition's older sets left on the topic.
    """
    chunks = [payload[start:start + chunk_bytes]
              for start in range(0, len(payload), chunk_bytes)] or [b""]
    outputs = [Output(topic, chunk_key(n), chunk, partition=partition)
               for n, chunk in enumerate(chunks)]
    manifest = SnapshotManifest(format=SNAPSHOT_FORMAT, partition=partition,
                                snapshot_id=snapshot_id, total_bytes=len(payload),
                                chunk_sha256=[hashlib.sha256(c).hexdigest() for c in chunks])
    # The manifest after its chunks: a reader that meets it has every chunk before it.
    outputs.append(Output(topic, SNAPSHOT_KEY, encode_manifest(manifest), partition=partition))
    # After the manifest: until it, the older set's manifest may still be the one read.
    outputs.extend(Output(topic, chunk_key(n), None, partition=partition)
                   for n in range(len(chunks), previous_chunks))
    return outputs


class SnapshotReader:
    """Collects snapshot records in partition order; returns a snapshot when one completes."""

    def __init__(self, topic: str, limits: SnapshotLimits,
                 skipped: Counter[tuple[str, str]]) -> None:
        self.topic = topic
        self.limits = limits
        self.skipped = skipped
        self._buffers: dict[int, dict[int, bytes]] = {}
        self._buffered_bytes = 0
        # Chunk indices whose latest record on the topic is not a tombstone (for writers).
        self._live: dict[int, set[int]] = {}

    def offer(self, record: Record) -> PartitionSnapshot | None:
        """Take one record under a snapshot key; the snapshot if this completed one."""
        assert record.key is not None and is_snapshot_key(record.key)
        if record.key == SNAPSHOT_KEY:
            return self._complete(record)
        index = _chunk_index(record.key)
        if index is None:
            self._skip(record, "snapshot_bad_key", f"key {record.key[:80]!r}")
            return None
        if index >= self.limits.max_chunks:
            self._skip(record, "snapshot_too_many_chunks", f"chunk {index}")
            return None
        buffer = self._buffers.setdefault(record.partition, {})
        live = self._live.setdefault(record.partition, set())
        self._unbuffer(buffer, index)  # an older chunk i is never used now
        if record.value is None:
            live.discard(index)
            return None
        live.add(index)
        if self._buffered_bytes + len(record.value) > self.limits.max_bytes:
            self._skip(record, "snapshot_too_large", f"chunk {index} would make the buffered "
                       f"chunks exceed {self.limits.max_bytes} bytes")
            return None
        buffer[index] = record.value
        self._buffered_bytes += len(record.value)
        return None

    def buffered_chunks(self, partition: int | None = None) -> int:
        if partition is not None:
            return len(self._buffers.get(partition, {}))
        return sum(len(buffer) for buffer in self._buffers.values())

    def chunks_on_topic(self, partition: int) -> int:
        """One past the highest chunk index still live on the partition (tombstone below)."""
        return max(self._live.get(partition, ()), default=-1) + 1

    def discard(self, partition: int) -> None:
        """End of a full read (ingest restore): chunks no manifest named are skipped."""
        self._count_unused(len(self._take(partition)))

    def drop(self, partition: int) -> None:
        """Forget a partition we no longer own (its next owner reads it again)."""
        self._take(partition)
        self._live.pop(partition, None)

    # -- internals ------------------------------------------------------------------------
    def _take(self, partition: int) -> dict[int, bytes]:
        buffer = self._buffers.pop(partition, {})
        self._buffered_bytes -= sum(len(chunk) for chunk in buffer.values())
        return buffer

    def _complete(self, record: Record) -> PartitionSnapshot | None:
        # Every manifest, good or bad, empties the buffer: a set is only ever the chunks
        # written right before its manifest, so nothing buffered can serve a later one.
        buffer = self._take(record.partition)
        try:
            if record.value is None:
                raise BadSnapshot("snapshot_bad_manifest", "a tombstone names no snapshot")
            manifest = decode_manifest(record.value)
            payload = self._assemble(manifest, buffer, record.partition)
            snapshot = decode_snapshot(payload, record.partition)
        except BadSnapshot as error:
            self._skip(record, error.reason, error.detail)
            self._count_unused(len(buffer))
            return None
        self._count_unused(len(buffer) - len(manifest.chunk_sha256))  # chunks it did not name
        return snapshot

    def _assemble(self, manifest: SnapshotManifest, buffer: dict[int, bytes],
                  partition: int) -> bytes:
        """The payload of the set ``manifest`` names, verified against its digests."""
        n = len(manifest.chunk_sha256)
        if manifest.partition != partition:
            raise BadSnapshot("snapshot_wrong_partition",
                              f"manifest of partition {manifest.partition}")
        if n > self.limits.max_chunks:
            raise BadSnapshot("snapshot_too_many_chunks", f"a set of {n} chunks")
        if manifest.total_bytes > self.limits.max_bytes:
            raise BadSnapshot("snapshot_too_large", f"a set of {manifest.total_bytes} bytes")
        missing = [i for i in range(n) if i not in buffer]
        if missing:
            raise BadSnapshot("snapshot_chunk_missing",
                              f"snapshot {manifest.snapshot_id}: chunks {missing[:10]} missing")
        chunks = [buffer[i] for i in range(n)]
        for i, (chunk, digest) in enumerate(zip(chunks, manifest.chunk_sha256)):
            if hashlib.sha256(chunk).hexdigest() != digest:
                raise BadSnapshot("snapshot_chunk_mismatch", f"snapshot {manifest.snapshot_id}: "
                                  f"chunk {i} does not match its sha256")
        if sum(len(chunk) for chunk in chunks) != manifest.total_bytes:
            raise BadSnapshot("snapshot_bad_manifest", "chunk sizes do not add up to total_bytes")
        return b"".join(chunks)

    def _unbuffer(self, buffer: dict[int, bytes], index: int) -> None:
        old = buffer.pop(index, None)
        if old is not None:
            self._buffered_bytes -= len(old)
            self._count_unused(1)

    def _count_unused(self, chunks: int) -> None:
        if chunks:
            self.skipped[(self.topic, "snapshot_chunk_unused")] += chunks

    def _skip(self, record: Record, reason: str, detail: str) -> None:
        self.skipped[(self.topic, reason)] += 1
        log.warning("skipped a model snapshot record on %s[%d]@%d (%s): %s; the partition "
                    "keeps its current models", record.topic, record.partition, record.offset,
                    reason, detail)

"""The data-only format of a partition's model snapshot, and its one decoder.

A snapshot is a ``PartitionSnapshotState``: the partition, the offset of the last event it
includes, the adopted deep-model version and the blend's exported state
(``OnlineBlend.to_state``: msgspec structs of plain values, numpy arrays as raw bytes with
dtype and shape). It is encoded as msgpack behind a magic prefix that names the format
version. Nothing in it can run code when decoded: that is the point. Format 1 was a
pickle; it is refused (reason ``snapshot_pickle``), never loaded.

On ``user-state`` the payload travels in chunks named by a manifest (``SnapshotManifest``,
also msgpack behind its own magic); ``streamrec.consumers.snapshot_chunks`` splits and reassembles.

Decoding is the border: ``decode_snapshot`` and ``decode_manifest`` return the typed value
or raise :class:`BadSnapshot`, and nothing else, whatever the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import msgspec

from streamrec.online_models.blend import BlendState, OnlineBlend

SNAPSHOT_FORMAT = 2
PAYLOAD_MAGIC = b"streamrec-snapshot/2\n"
MANIFEST_MAGIC = b"streamrec-snapshot-manifest/2\n"
# pickle protocol 2+ opens with PROTO (0x80) and the protocol number: format 1 snapshots.
_PICKLE_PREFIXES = tuple(bytes([0x80, n]) for n in range(2, 6))
# A manifest is a few hundred bytes (about 70 per chunk): anything far larger is not one.
MAX_MANIFEST_BYTES = 1 << 20


class BadSnapshot(ValueError):
    """Bytes under a snapshot key that are not a usable snapshot; ``reason`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class PartitionSnapshotState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: int
    partition: int
    offset: int  # of the last event the snapshot includes (-1: none)
    adopted_version: str | None
    blend: BlendState


class SnapshotManifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The record under ``SNAPSHOT_KEY`` that names one snapshot's chunks."""

    format: int
    partition: int
    snapshot_id: int  # the snapshot's offset: sets are told apart by it in logs
    total_bytes: int
    chunk_sha256: list[str]  # hex digest of each chunk, in order; their count is the set's


@dataclass(frozen=True)
class PartitionSnapshot:
    """A decoded, validated snapshot with its blend rebuilt."""

    partition: int
    offset: int
    adopted_version: str | None
    blend: OnlineBlend


_payload_decoder = msgspec.msgpack.Decoder(PartitionSnapshotState)
_manifest_decoder = msgspec.msgpack.Decoder(SnapshotManifest)
_encoder = msgspec.msgpack.Encoder()


def encode_snapshot(partition: int, offset: int, adopted_version: str | None,
                    blend: OnlineBlend) -> bytes:
    state = PartitionSnapshotState(format=SNAPSHOT_FORMAT, partition=partition, offset=offset,
                                   adopted_version=adopted_version, blend=blend.to_state())
    return PAYLOAD_MAGIC + _encoder.encode(state)


def encode_manifest(manifest: SnapshotManifest) -> bytes:
    return MANIFEST_MAGIC + _encoder.encode(manifest)


Versioned = TypeVar("Versioned", SnapshotManifest, PartitionSnapshotState)


def _decode(decoder: msgspec.msgpack.Decoder[Versioned], data: bytes | memoryview,
            magic: bytes, what: str, reason: str) -> Versioned:
    """The struct after ``magic``, of our format; a pickle or anything else is refused unread."""
    head = bytes(data[:len(magic)])
    if head.startswith(_PICKLE_PREFIXES):
        raise BadSnapshot("snapshot_pickle", f"{what} is a pickle (format 1): refused, never "
                                             "loaded")
    if head != magic:
        raise BadSnapshot("snapshot_unknown_format", f"{what} does not start with {magic!r}")
    try:
        value = decoder.decode(memoryview(data)[len(magic):])
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, MemoryError,
            ValueError, UnicodeError) as exc:
        raise BadSnapshot(reason, str(exc)[:200]) from None
    if value.format != SNAPSHOT_FORMAT:
        raise BadSnapshot("snapshot_unknown_format", f"{what} of format {value.format}")
    return value


def decode_manifest(data: bytes) -> SnapshotManifest:
    """The manifest in ``data``, or :class:`BadSnapshot`."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BadSnapshot("snapshot_bad_manifest", f"manifest of {len(data)} bytes")
    manifest = _decode(_manifest_decoder, data, MANIFEST_MAGIC, "manifest",
                       "snapshot_bad_manifest")
    if not all(len(d) == 64 and d.isascii() and _is_hex(d) for d in manifest.chunk_sha256):
        raise BadSnapshot("snapshot_bad_manifest", "a chunk digest is not 64 hex digits")
    if manifest.total_bytes < 0 or not manifest.chunk_sha256:
        raise BadSnapshot("snapshot_bad_manifest", "no chunks, or a negative size")
    return manifest


def decode_snapshot(data: bytes | memoryview, partition: int) -> PartitionSnapshot:
    """The snapshot of ``partition`` in ``data`` with its blend rebuilt, or :class:`BadSnapshot`.

    Every failure while decoding or rebuilding (types, sizes, dtypes, shapes, indices,
    NaN, recursion, memory) becomes ``BadSnapshot``; ``data`` is bounded by the caller.
    """
    state = _decode(_payload_decoder, data, PAYLOAD_MAGIC, "snapshot", "snapshot_bad_payload")
    if state.partition != partition:
        raise BadSnapshot("snapshot_wrong_partition",
                          f"snapshot of partition {state.partition} on partition {partition}")
    if state.offset < -1:
        raise BadSnapshot("snapshot_bad_payload", f"offset {state.offset}")
    try:
        blend = OnlineBlend.from_state(state.blend)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, RecursionError,
            MemoryError) as exc:
        # StateError (a ValueError) for anything inconsistent; the others only if a check
        # missed something: still no exception of the learners' leaves this border.
        raise BadSnapshot("snapshot_bad_payload", f"{type(exc).__name__}: {str(exc)[:200]}"
                          ) from None
    return PartitionSnapshot(state.partition, state.offset, state.adopted_version, blend)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)

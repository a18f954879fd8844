"""Model snapshots: the data-only codec, chunk records and their reassembly. No broker."""

from __future__ import annotations

import json
import logging
import pickle
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit.learner_checks import learned_state, toy_stream

from streamrec.consumers.partition_models import SNAPSHOT_KEY
from streamrec.consumers.snapshot_chunks import (CHUNK_KEY_PREFIX, SnapshotLimits, SnapshotReader,
                                       chunk_key, snapshot_records)
from streamrec.consumers.snapshot_codec import (MANIFEST_MAGIC, PAYLOAD_MAGIC, BadSnapshot,
                                      PartitionSnapshot, decode_manifest, decode_snapshot,
                                      encode_snapshot)
from streamrec.online_models.blend import OnlineBlend
from streamrec.records import Output, Record

TOPIC = "user-state"


def learned_blend(n_events: int = 400, seed: int = 1) -> OnlineBlend:
    blend = OnlineBlend(seed=seed)
    events = toy_stream(n_events)
    for start in range(0, len(events), 64):
        blend.learn_many(events[start:start + 64])
    return blend


BLEND = learned_blend()
PAYLOAD = encode_snapshot(0, 399, "v000003", BLEND)


def records(outputs: list[Output], first_offset: int = 0, partition: int = 0) -> list[Record]:
    return [Record(TOPIC, partition, first_offset + n, o.key, o.value)
            for n, o in enumerate(outputs)]


def reader(**limits: int) -> tuple[SnapshotReader, Counter]:
    skipped: Counter[tuple[str, str]] = Counter()
    return SnapshotReader(TOPIC, SnapshotLimits(**limits), skipped), skipped


def read(snapshot_reader: SnapshotReader, log: list[Record]) -> list[PartitionSnapshot]:
    return [s for s in map(snapshot_reader.offer, log) if s is not None]


def split(payload: bytes = PAYLOAD, chunk_bytes: int = 4096, previous: int = 0,
          snapshot_id: int = 399) -> list[Output]:
    return snapshot_records(TOPIC, 0, payload, snapshot_id, chunk_bytes, previous)


# -- the writer --------------------------------------------------------------------------
def test_a_snapshot_is_chunks_then_the_naming_record_then_stale_tombstones() -> None:
    outputs = split(chunk_bytes=4096, previous=500)
    n = -(-len(PAYLOAD) // 4096)
    assert n > 10
    assert [o.key for o in outputs[:n]] == [chunk_key(i) for i in range(n)]
    assert all(o.value is not None and len(o.value) <= 4096 for o in outputs[:n])
    assert b"".join(o.value for o in outputs[:n]) == PAYLOAD  # type: ignore[misc]
    assert outputs[n].key == SNAPSHOT_KEY and outputs[n].value.startswith(MANIFEST_MAGIC)
    manifest = decode_manifest(outputs[n].value)
    assert (manifest.snapshot_id, manifest.total_bytes, len(manifest.chunk_sha256)) == (
        399, len(PAYLOAD), n)
    assert [(o.key, o.value) for o in outputs[n + 1:]] == [(chunk_key(i), None)
                                                         for i in range(n, 500)]
    assert all(o.partition == 0 and o.topic == TOPIC for o in outputs)
    assert all(o.key.startswith(b"__streamrec_") for o in outputs)  # type: ignore[union-attr]


# -- the reader --------------------------------------------------------------------------
def test_a_complete_set_decodes_to_an_identical_blend_in_any_chunk_order() -> None:
    outputs = split()
    chunks, manifest = outputs[:-1], outputs[-1]
    random.Random(3).shuffle(chunks)
    snapshot_reader, skipped = reader()
    (snapshot,) = read(snapshot_reader, records([*chunks, manifest]))
    assert (snapshot.partition, snapshot.offset, snapshot.adopted_version) == (0, 399, "v000003")
    assert learned_state(snapshot.blend) == learned_state(BLEND)
    assert encode_snapshot(0, 399, "v000003", snapshot.blend) == PAYLOAD
    assert not skipped and snapshot_reader.buffered_chunks() == 0


@pytest.mark.parametrize("damage, reason", [
    ("drop_chunk", "snapshot_chunk_missing"),
    ("flip_byte", "snapshot_chunk_mismatch"),
    ("other_partition", "snapshot_wrong_partition"),
    ("manifest_tombstone", "snapshot_bad_manifest"),
    ("pickle_manifest", "snapshot_pickle"),
])
def test_a_damaged_set_is_a_counted_skip_and_the_previous_snapshot_stays(
        damage: str, reason: str) -> None:
    older = split(encode_snapshot(0, 99, None, learned_blend(150)), snapshot_id=99)
    newer = split()
    chunks, manifest = newer[:-1], newer[-1]
    if damage == "drop_chunk":
        del chunks[3]
    elif damage == "flip_byte":
        value = bytearray(chunks[2].value)  # type: ignore[arg-type]
        value[10] ^= 1
        chunks[2] = Output(TOPIC, chunks[2].key, bytes(value), partition=0)
    elif damage == "other_partition":
        moved = snapshot_records(TOPIC, 1, PAYLOAD, 399, 4096, 0)
        chunks, manifest = moved[:-1], moved[-1]
    elif damage == "manifest_tombstone":
        manifest = Output(TOPIC, SNAPSHOT_KEY, None, partition=0)
    else:
        manifest = Output(TOPIC, SNAPSHOT_KEY, pickle.dumps({"format": 1}), partition=0)
    snapshot_reader, skipped = reader()
    found = read(snapshot_reader, records([*older, *chunks, manifest]))
    assert [s.offset for s in found] == [99]  # the reader keeps what it had
    assert skipped[(TOPIC, reason)] == 1
    # Every chunk of the bad set is accounted for, and nothing stays buffered.
    assert skipped[(TOPIC, "snapshot_chunk_unused")] == len(chunks)
    assert snapshot_reader.buffered_chunks() == 0


def test_chunks_of_an_older_set_never_complete_a_newer_manifest() -> None:
    old = split(encode_snapshot(0, 99, None, learned_blend(150)), snapshot_id=99)
    new = split()
    snapshot_reader, skipped = reader()
    # The newer set's chunks were lost (say, a partial compaction): only its manifest is left.
    assert read(snapshot_reader, records([*old[:-1], new[-1]])) == []
    assert skipped[(TOPIC, "snapshot_chunk_missing")] + skipped[
        (TOPIC, "snapshot_chunk_mismatch")] == 1


def test_a_shorter_set_tombstones_the_longer_ones_chunks() -> None:
    longer = split(chunk_bytes=1024)
    shorter = split(encode_snapshot(0, 500, None, learned_blend(150)), chunk_bytes=1024,
                    previous=len(longer) - 1, snapshot_id=500)
    snapshot_reader, skipped = reader()
    found = read(snapshot_reader, records([*longer, *shorter]))
    assert [s.offset for s in found] == [399, 500] and not skipped
    n_short = sum(o.value is not None for o in shorter) - 1
    assert snapshot_reader.chunks_on_topic(0) == n_short < len(longer) - 1


def test_too_many_chunks_or_bytes_are_refused_before_buffering() -> None:
    snapshot_reader, skipped = reader(max_chunks=5, max_bytes=3 * 4096)
    outputs = split()
    n = len(outputs) - 1
    assert read(snapshot_reader, records(outputs)) == []
    # Chunks 0-2 fill the byte budget, 3-4 find it full, 5+ are past max_chunks, and so
    # is the manifest; the three buffered ones are counted when the manifest empties it.
    assert skipped == {(TOPIC, "snapshot_too_large"): 2,
                       (TOPIC, "snapshot_too_many_chunks"): n - 5 + 1,
                       (TOPIC, "snapshot_chunk_unused"): 3}
    assert snapshot_reader.buffered_chunks() == 0
    # Bytes are bounded across partitions, whatever arrives.
    flood, skipped = reader(max_bytes=10_000)
    for n in range(50):
        flood.offer(Record(TOPIC, n % 4, n, chunk_key(n // 4), b"x" * 3000))
        assert flood._buffered_bytes <= 10_000
    assert skipped[(TOPIC, "snapshot_too_large")] == 50 - 3
    assert flood.buffered_chunks() == 3


def test_malformed_chunk_keys_are_counted() -> None:
    snapshot_reader, skipped = reader()
    for n, key in enumerate([CHUNK_KEY_PREFIX + b"01", CHUNK_KEY_PREFIX + b"-1",
                             CHUNK_KEY_PREFIX, SNAPSHOT_KEY + b"x", CHUNK_KEY_PREFIX + b"9" * 30]):
        snapshot_reader.offer(Record(TOPIC, 0, n, key, b"data"))
    assert skipped == {(TOPIC, "snapshot_bad_key"): 5}


# -- the codec: one typed error for any bytes --------------------------------------------
class Planted:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("never printed",))


HOSTILE = {
    "random": random.Random(1).randbytes(5000),
    "empty": b"",
    "truncated": PAYLOAD[: len(PAYLOAD) // 2],
    "pickle": pickle.dumps(Planted()),
    "nested_json": json.dumps([[[[[[[]]]]]]] * 3).encode() * 50,
    "magic_then_deep_arrays": PAYLOAD_MAGIC + b"\x91" * 100_000,
    "magic_then_garbage": PAYLOAD_MAGIC + b"\xc1" * 50,
    "magic_then_wrong_type": PAYLOAD_MAGIC + b"\x93\x01\x02\x03",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_bytes_are_one_typed_error(name: str) -> None:
    with pytest.raises(BadSnapshot) as error:
        decode_snapshot(HOSTILE[name], 0)
    assert error.value.reason.startswith("snapshot_")
    with pytest.raises(BadSnapshot):
        decode_manifest(HOSTILE[name])


def test_a_pickle_is_refused_by_name_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(BadSnapshot) as error:
        decode_snapshot(HOSTILE["pickle"], 0)
    assert error.value.reason == "snapshot_pickle"
    snapshot_reader, skipped = reader()
    with caplog.at_level(logging.WARNING):
        snapshot_reader.offer(Record(TOPIC, 0, 7, SNAPSHOT_KEY, HOSTILE["pickle"]))
    assert skipped == {(TOPIC, "snapshot_pickle"): 1}
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


# A tampered value that decodes must also rank and learn in range: an overflow warning means
# scores of inf or NaN would reach the recommendations topic.
@pytest.mark.filterwarnings("error::RuntimeWarning")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(PAYLOAD) - 1), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.integers(len(PAYLOAD_MAGIC), len(PAYLOAD)))
def test_a_tampered_payload_decodes_or_is_one_typed_error(
        edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(PAYLOAD)
    for position, value in edits:
        data[position] = value
    for candidate in (bytes(data), bytes(data[:cut])):
        try:
            snapshot = decode_snapshot(candidate, 0)
        except BadSnapshot:
            continue
        # Decoded: a blend that ranks and learns without raising.
        snapshot.blend.recommend_explained("u1", 10)
        snapshot.blend.learn_many(toy_stream(40))


def test_snapshot_settings_keep_chunks_under_the_topic_limit() -> None:
    from streamrec.config import ConfigError, Settings

    chosen = Settings.from_env({"STREAMREC_SNAPSHOT_CHUNK_BYTES": "1048576",
                                "STREAMREC_SNAPSHOT_MAX_BYTES": "8388608"})
    assert SnapshotLimits.from_settings(chosen) == SnapshotLimits(1 << 20, 1024, 8 << 20)
    for bad in ({"snapshot_chunk_bytes": 40 * 1024 * 1024}, {"snapshot_chunk_bytes": 0},
                {"snapshot_max_chunks": 0}, {"snapshot_max_bytes": 1024}):
        with pytest.raises(ConfigError):
            Settings(**bad).validate()  # type: ignore[arg-type]

"""Hostile records under the snapshot keys of user-state, into the real processors. No broker.

Ingest's restore and the scorer must never run what they read (a pickle planted under the
snapshot key creates a marker file if anything unpickles it), never raise, and account
for every record: part of a valid snapshot, or counted in ``skipped_by_reason``.
"""

from __future__ import annotations

import hashlib
import pathlib
import pickle

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snapshots import as_records, planted_records
from unit.learner_checks import learned_state

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.partition_models import SNAPSHOT_KEY
from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.consumers.snapshot_chunks import CHUNK_KEY_PREFIX, chunk_key
from streamrec.consumers.snapshot_codec import (MANIFEST_MAGIC, PAYLOAD_MAGIC, SNAPSHOT_FORMAT,
                                      SnapshotManifest, encode_manifest)
from streamrec.online_models.user_state import decode_state
from streamrec.config import Settings
from streamrec.events import ClickEvent, encode_click
from streamrec.records import Record

# Small chunks, so a snapshot of a few users (about 400 KB) takes a dozen.
SETTINGS = Settings(top_k=3, learn_every=4, snapshot_every=8, snapshot_chunk_bytes=32 * 1024,
                    snapshot_max_chunks=16, snapshot_max_bytes=1024 * 1024)
T = SETTINGS.topics


def click(offset: int, user: str, item: str) -> Record:
    event = ClickEvent(event_id=f"e{offset}", user_id=user, item_id=item, type="click",
                       ts=float(offset))
    return Record(T.clicks, 0, offset, user.encode(), encode_click(event), timestamp_ms=1000)


def user_state_log(n_clicks: int = 20, settings: Settings = SETTINGS) -> list[Record]:
    """What ingest wrote for a few clicks: states and valid snapshots, as offsets in order."""
    ingest = IngestProcessor(settings)
    outputs = ingest.process([click(i, f"u{i % 3}", f"i{i % 11}") for i in range(n_clicks)]).outputs
    return as_records(o for o in outputs if o.topic == T.user_state)


def test_the_payload_is_live(tmp_path: pathlib.Path) -> None:
    """The planted bytes really would run: unpickling them here creates the marker."""
    marker = tmp_path / "proof"
    pickle.loads(planted_records(marker, T.user_state)[0].value)  # type: ignore[arg-type]
    assert marker.exists()


def test_a_pickle_planted_in_user_state_executes_nothing(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    planted = planted_records(marker, T.user_state, first=1000)
    # Ingest's restore: the pickles are skipped, the models re-learn from offset 0.
    ingest = IngestProcessor(SETTINGS)
    assert ingest.restore(0, planted) == 0
    assert not marker.exists()
    assert ingest.rewarm_from(0) == 0
    assert ingest.skipped_by_reason == {(T.user_state, "snapshot_pickle"): 3,
                                        (T.user_state, "snapshot_chunk_unused"): 1}
    assert ingest.process([click(0, "u1", "a")]).processed == 1  # and ingest goes on
    # The scorer, live: it keeps ranking by popularity.
    scorer = ScoreProcessor(SETTINGS, clock=lambda: 1.0)
    states = [Record(T.user_state, 0, 2000 + n, r.key, r.value)
              for n, r in enumerate(user_state_log()) if not r.key.startswith(SNAPSHOT_KEY)]
    result = scorer.process([*planted, *states])
    assert not marker.exists()
    assert scorer.skipped_by_reason == ingest.skipped_by_reason
    published = [recommendation_decoder.decode(o.value) for o in result.outputs
                 if o.topic == T.recommendations]
    # Each ranked at its position: the first user's own clicks are all popularity knows yet.
    assert [bool(m.items) for m in published] == [False, True, True]
    assert {m.model_version for m in published} == {"popularity"}
    # ... and on restore.
    restored = ScoreProcessor(SETTINGS)
    restored.restore(0, planted)
    assert not marker.exists() and sum(restored.skipped_by_reason.values()) == 4


def test_a_bad_set_keeps_the_last_good_snapshot() -> None:
    log = user_state_log(40)
    good = IngestProcessor(SETTINGS)
    good.restore(0, log)
    start = good.rewarm_from(0)
    assert start is not None and start > 0 and not good.skipped_by_reason
    tampered = [*log, Record(T.user_state, 0, len(log), chunk_key(0), b"tampered"),
                Record(T.user_state, 0, len(log) + 1, SNAPSHOT_KEY, MANIFEST_MAGIC + b"\x80")]
    for processor in (IngestProcessor(SETTINGS), ScoreProcessor(SETTINGS)):
        processor.restore(0, tampered)
        assert processor.skipped_by_reason == {(T.user_state, "snapshot_bad_manifest"): 1,
                                               (T.user_state, "snapshot_chunk_unused"): 1}
    ingest = IngestProcessor(SETTINGS)
    ingest.restore(0, tampered)
    assert ingest.rewarm_from(0) == start
    assert learned_state(ingest.models(0).blend) == learned_state(good.models(0).blend)


def test_a_set_split_by_the_scorers_committed_offset_completes_in_the_next_batch() -> None:
    log = user_state_log(40)
    manifest_at = max(r.offset for r in log if r.key == SNAPSHOT_KEY)
    cut = manifest_at - 1  # the restore ends between a set's chunks and its manifest
    scorer = ScoreProcessor(SETTINGS)
    scorer.restore(0, log[:cut])
    before = scorer._models.get(0)
    scorer.process(log[cut:], publish=False)
    assert scorer._models.get(0) is not before and not scorer.skipped_by_reason
    reference = IngestProcessor(SETTINGS)
    reference.restore(0, log)
    assert learned_state(scorer._models[0]) == learned_state(reference.models(0).blend)


def test_restored_ingest_tombstones_chunks_its_next_snapshot_does_not_reuse() -> None:
    # Sets of two chunks, and three stale chunks an older, longer set left on the topic.
    settings = SETTINGS.replace(snapshot_chunk_bytes=256 * 1024)
    log = user_state_log(40, settings) + [Record(T.user_state, 0, 900 + n, chunk_key(n), b"old")
                                          for n in range(3, 6)]
    ingest = IngestProcessor(settings)
    ingest.restore(0, log)
    models = ingest.models(0)
    assert models is not None and models.chunks_on_topic == 6
    start = ingest.rewarm_from(0)
    models.make_snapshot_due()
    outputs = ingest.process([click(start + n, "u1", "z") for n in range(4)]).outputs
    keys = [o.key for o in outputs]
    named = keys.index(SNAPSHOT_KEY)
    written = [k for k in keys[:named] if k is not None and k.startswith(CHUNK_KEY_PREFIX)]
    tombstones = [o.key for o in outputs[named + 1:] if o.value is None]
    assert len(written) == 2 and tombstones == [chunk_key(n) for n in range(2, 6)]


# -- property: whatever sits under the snapshot keys, nothing raises, all is counted -------
SNAPSHOT_KEYS = st.sampled_from([SNAPSHOT_KEY, chunk_key(0), chunk_key(1), chunk_key(15),
                                 chunk_key(16), chunk_key(10 ** 6), CHUNK_KEY_PREFIX + b"007",
                                 SNAPSHOT_KEY + b"\xff\x00"])


def _manifest(shas: list[bytes], total: int, partition: int) -> bytes:
    return encode_manifest(SnapshotManifest(
        format=SNAPSHOT_FORMAT, partition=partition, snapshot_id=1, total_bytes=total,
        chunk_sha256=[hashlib.sha256(s).hexdigest() for s in shas]))


VALUES = st.one_of(
    st.none(), st.binary(max_size=3000),
    st.binary(max_size=200).map(lambda b: MANIFEST_MAGIC + b),
    st.binary(max_size=200).map(lambda b: PAYLOAD_MAGIC + b),
    st.just(pickle.dumps({"format": 1})),
    st.integers(1, 40_000).map(lambda n: b"\x91" * n),  # msgpack nested n deep
    st.builds(_manifest, st.lists(st.binary(max_size=50), max_size=8),
              st.integers(-5, 10 ** 12), st.sampled_from([0, 1])),
)


def _expected_counted(records: list[Record]) -> int:
    """Every hostile record is counted once, but for chunk tombstones (a normal delete)."""
    well_formed = {chunk_key(n) for n in range(SETTINGS.snapshot_max_chunks)}
    return sum(not (r.value is None and r.key in well_formed) for r in records)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(SNAPSHOT_KEYS, VALUES), max_size=12))
def test_hostile_snapshot_records_never_raise_and_are_all_counted(pairs: list) -> None:
    hostile = [Record(T.user_state, 0, 500 + n, key, value) for n, (key, value) in enumerate(pairs)]
    states = [r for r in user_state_log(12) if r.key is not None
              and not r.key.startswith(SNAPSHOT_KEY)]
    ingest = IngestProcessor(SETTINGS)
    ingest.restore(0, [*states, *hostile])
    assert sum(ingest.skipped_by_reason.values()) == _expected_counted(hostile)
    assert ingest.rewarm_from(0) == 0  # no valid snapshot: everything is re-learned
    assert ingest.process([click(100, "u1", "a")]).processed == 1
    scorer = ScoreProcessor(SETTINGS, clock=lambda: 1.0)
    result = scorer.process([*hostile, *states])
    assert sum(scorer.skipped_by_reason.values()) + scorer.snapshots.buffered_chunks() == \
        _expected_counted(hostile)
    assert scorer.snapshots._buffered_bytes <= SETTINGS.snapshot_max_bytes
    assert scorer.snapshots.buffered_chunks() <= SETTINGS.snapshot_max_chunks
    assert result.processed == len({r.key for r in states})
    assert all(decode_state(r.value).user_id for r in states)  # type: ignore[arg-type]

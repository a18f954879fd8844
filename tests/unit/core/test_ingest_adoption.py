"""Ingest adopts a published model's item table at the adopt-model message: no broker, no torch."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from unit.core.model_store_fakes import adopt_messages, corrupt_table, publish_fake_model
from snapshots import snapshots_of
from unit.learner_checks import learned_state

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.partition_models import SNAPSHOT_KEY, is_snapshot_key
from streamrec.export.item_table import load_published_item_table
from streamrec.online_models.user_state import UserState, decode_state
from streamrec.config import Settings
from streamrec.control import (CONTROL_KEY, AdoptModelRequest, ControlMessage,
                               adopt_model_requests)

STORE = "./model-store"
from streamrec.events import ClickEvent, encode_click
from streamrec.records import ProcessResult, Record

SETTINGS = Settings(top_k=3, learn_every=4, snapshot_every=8)
T = SETTINGS.topics
ITEMS = [f"i{n}" for n in range(60)]
DEEP_DIM = 12


def click(offset: int, user: str, item: str) -> Record:
    event = ClickEvent(event_id=f"e{offset}", user_id=user, item_id=item, type="click",
                       ts=float(offset))
    return Record(T.clicks, 0, offset, user.encode(), encode_click(event), timestamp_ms=1000)


def control(offset: int, message: ControlMessage) -> Record:
    return Record(T.clicks, 0, offset, message.key, message.value, headers=message.headers)


def stream(adopt_at: int, n: int, model: dict) -> list[Record]:
    """Clicks at every offset below ``n`` but ``adopt_at``, which holds the adopt-model message."""
    adopt = adopt_messages(model, [0])[0]
    return [control(o, adopt) if o == adopt_at else click(o, f"u{o % 5}", ITEMS[(o * 7) % 50])
            for o in range(n)]


@pytest.fixture()
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    # Published where the default Settings.model_store (./model-store) finds it.
    monkeypatch.chdir(tmp_path)
    return publish_fake_model(tmp_path / "model-store", ITEMS, dim=DEEP_DIM)


def same_models(a: IngestProcessor, b: IngestProcessor, partition: int = 0) -> bool:
    ma, mb = a.models(partition), b.models(partition)
    assert ma is not None and mb is not None
    return (learned_state(ma.blend) == learned_state(mb.blend)
            and ma.adopted_version == mb.adopted_version)


def states(result: ProcessResult) -> dict[bytes, UserState]:
    return {o.key: decode_state(o.value) for o in result.outputs  # type: ignore[misc]
            if not is_snapshot_key(o.key) and o.value is not None}


def test_adoption_moves_every_user_to_the_deep_space_with_a_snapshot_first(model: dict) -> None:
    ingest = IngestProcessor(SETTINGS)
    records = stream(adopt_at=30, n=31, model=model)
    ingest.process(records[:30])
    assert ingest.models(0).pending  # 30 events, micro-batches of 4: two wait
    result = ingest.process(records[30:])
    assert (result.rejected, result.processed) == (0, 0)  # a control message, not an event
    assert all(o.topic == T.user_state for o in result.outputs)
    assert CONTROL_KEY not in ingest.users(0) and "__streamrec_control__" not in ingest.users(0)
    # The forced snapshot comes first (its chunks, then the record naming them), stands at
    # the control message, and is in the new space.
    keys = [o.key for o in result.outputs]
    assert keys.count(SNAPSHOT_KEY) == 1
    assert all(is_snapshot_key(key) for key in keys[:keys.index(SNAPSHOT_KEY) + 1])
    (snapshot,) = snapshots_of(result.outputs)
    assert snapshot.offset == 30 and snapshot.adopted_version == model["version"]
    assert snapshot.blend.embeddings.current_dim == DEEP_DIM
    # Every user's state goes out again with a vector of the new size.
    emitted = states(result)
    assert sorted(emitted) == [f"u{n}".encode() for n in range(5)]
    assert all(len(s.embedding) == DEEP_DIM for s in emitted.values())
    assert ingest.models(0).pending == [] and ingest.adoptions_by_outcome == {"adopted": 1}


def test_the_point_of_adoption_is_fixed_by_the_message_not_by_micro_batches(model: dict) -> None:
    records = stream(adopt_at=30, n=45, model=model)
    ingest = IngestProcessor(SETTINGS)
    ingest.process(records)
    # By hand: learn the 30 clicks, flush the short batch, adopt, then the rest.
    reference = IngestProcessor(SETTINGS)
    reference.process(records[:30])
    models = reference.models(0)
    assert models is not None
    models.flush()
    request = AdoptModelRequest.decode(records[30].value)
    models.blend.embeddings.adopt_item_table(*load_published_item_table(
        STORE, request.version, request.manifest_sha256, request.path))
    reference.process(records[31:])
    assert learned_state(ingest.models(0).blend) == learned_state(models.blend)
    # Adopting one event later is a different sequence, and gives different models.
    later = IngestProcessor(SETTINGS)
    later.process(stream(adopt_at=31, n=45, model=model))
    assert learned_state(later.models(0).blend) != learned_state(models.blend)


def test_same_sequence_cut_differently_gives_identical_models(model: dict) -> None:
    records = stream(adopt_at=22, n=70, model=model)
    whole, cut = IngestProcessor(SETTINGS), IngestProcessor(SETTINGS)
    whole.process(records)
    for start in range(0, len(records), 9):
        cut.process(records[start:start + 9])
    assert same_models(whole, cut)
    assert {u: s.learned_view() for u, s in whole.all_states().items()} == \
        {u: s.learned_view() for u, s in cut.all_states().items()}


def test_restore_after_a_crash_around_the_adoption_reaches_the_uninterrupted_run(
        model: dict) -> None:
    records = stream(adopt_at=27, n=60, model=model)
    uninterrupted = IngestProcessor(SETTINGS)
    uninterrupted.process(records)
    for committed in (20, 28, 41):  # before the adoption, right after it, well after it
        first = IngestProcessor(SETTINGS)
        written = first.process(records[:committed]).outputs
        changelog = [Record(T.user_state, 0, i, o.key, o.value) for i, o in enumerate(written)]
        restored = IngestProcessor(SETTINGS)
        restored.restore(0, changelog)
        start = restored.rewarm_from(0)
        assert start is not None and start <= committed
        restored.rewarm(0, records[start:committed])
        restored.process(records[committed:])
        assert same_models(restored, uninterrupted), committed
        assert {u: s.learned_view() for u, s in restored.all_states().items()} == \
            {u: s.learned_view() for u, s in uninterrupted.all_states().items()}


def test_rewarm_through_an_adoption_changes_space_at_the_same_point(model: dict) -> None:
    # Cannot follow a commit (an adoption snapshots in its own transaction), but a rewarm
    # from an older snapshot must still reproduce it exactly.
    records = stream(adopt_at=19, n=26, model=model)
    reference = IngestProcessor(SETTINGS)
    reference.process(records)
    first = IngestProcessor(SETTINGS)
    written = first.process(records[:12]).outputs
    restored = IngestProcessor(SETTINGS)
    restored.restore(0, [Record(T.user_state, 0, i, o.key, o.value) for i, o in enumerate(written)])
    restored.rewarm(0, records[restored.rewarm_from(0):])  # type: ignore[misc]
    assert same_models(restored, reference)
    assert restored.models(0).adopted_version == model["version"]


@pytest.mark.parametrize("damage, reason", [
    ("missing", "missing_file"), ("corrupt", "checksum_mismatch"), ("garbage", "bad_request")])
def test_an_unreadable_model_is_skipped_counted_and_never_dead_lettered(
        model: dict, damage: str, reason: str) -> None:
    records = stream(adopt_at=30, n=40, model=model)
    if damage == "missing":
        shutil.rmtree(model["path"])
    elif damage == "corrupt":
        corrupt_table(model)
    else:
        records[30] = Record(T.clicks, 0, 30, CONTROL_KEY, b"{not json",
                             headers=records[30].headers)
    ingest = IngestProcessor(SETTINGS)
    ingest.process(records[:30])
    dim = ingest.models(0).blend.embeddings.current_dim
    result = ingest.process(records[30:])
    assert result.rejected == 0 and not any(o.topic == T.dlq for o in result.outputs)
    assert result.processed == 9  # the events after it go on as usual
    assert ingest.adoptions_by_outcome == {reason: 1}
    assert ingest.models(0).blend.embeddings.current_dim == dim != DEEP_DIM
    assert ingest.models(0).adopted_version is None
    # The outcome is still recorded by a snapshot at (or after) the control message.
    snapshot = snapshots_of(result.outputs)[0]
    assert snapshot.offset >= 30
    assert all(len(s.embedding) == dim for s in states(result).values() if s.embedding)


def test_a_repeated_message_for_the_adopted_version_changes_nothing(model: dict) -> None:
    adopt = adopt_messages(model, [0])[0]
    ingest = IngestProcessor(SETTINGS)
    ingest.process([click(o, f"u{o % 3}", ITEMS[o % 40]) for o in range(12)] + [control(12, adopt)])
    before = learned_state(ingest.models(0).blend)
    ingest.process([control(13, adopt)])
    assert learned_state(ingest.models(0).blend) == before
    assert ingest.adoptions_by_outcome == {"adopted": 1, "already_adopted": 1}


def test_without_online_learning_the_message_is_ignored(model: dict) -> None:
    ingest = IngestProcessor(SETTINGS.replace(online_learning=0))
    result = ingest.process(stream(adopt_at=3, n=6, model=model))
    assert (result.processed, result.rejected) == (5, 0)
    assert not any(o.key == SNAPSHOT_KEY for o in result.outputs)


def test_every_partition_adopts_but_the_table_is_read_once(
        model: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamrec.consumers.model_adoption

    reads: list[str] = []

    def counting(root, version, sha256, path):  # type: ignore[no-untyped-def]
        reads.append(str(path))
        return load_published_item_table(root, version, sha256, path)

    monkeypatch.setattr(streamrec.consumers.model_adoption, "load_published_item_table", counting)
    ingest = IngestProcessor(SETTINGS)
    messages = adopt_messages(model, [2, 0, 1])
    assert [m.partition for m in messages] == [0, 1, 2]
    ingest.process([Record(T.clicks, m.partition or 0, 0, m.key, m.value, headers=m.headers)
                    for m in messages])
    assert ingest.adoptions_by_outcome == {"adopted": 3} and reads == [model["path"]]
    assert all(ingest.models(p).blend.embeddings.current_dim == DEEP_DIM for p in range(3))


def test_a_fake_loader_can_stand_in_for_the_store() -> None:
    message = adopt_model_requests(b'{"version": "v000009", "path": "/nowhere", '
                                   b'"manifest_sha256": "%s"}' % (b"0" * 64), [0])[0]
    ingest = IngestProcessor(SETTINGS, load_item_table=lambda request: (
        ["a", "b"], np.ones((2, 3), dtype=np.float32)))
    ingest.process([click(0, "u1", "a"), control(1, message), click(2, "u1", "b")])
    assert ingest.models(0).blend.embeddings.current_dim == 3
    assert ingest.models(0).adopted_version == "v000009"


def test_the_scorer_ranks_an_old_space_state_with_the_new_snapshot(model: dict) -> None:
    """A state written before the adoption can reach the scorer after the new snapshot."""
    from streamrec.consumers.score import ScoreProcessor

    ingest = IngestProcessor(SETTINGS)
    records = stream(adopt_at=30, n=31, model=model)
    before = ingest.process(records[:30])
    old_states = [o for o in before.outputs if not is_snapshot_key(o.key) and o.value is not None]
    assert old_states and len(decode_state(old_states[-1].value).embedding) != DEEP_DIM
    after = ingest.process(records[30:])
    scorer = ScoreProcessor(SETTINGS, clock=lambda: 1.0)
    snapshot = [Record(T.user_state, 0, n, o.key, o.value)
                for n, o in enumerate(after.outputs) if is_snapshot_key(o.key)]
    stale = [Record(T.user_state, 0, len(snapshot) + n, o.key, o.value)
             for n, o in enumerate(old_states)]
    published = scorer.process([*snapshot, *stale]).outputs
    recommendations = [o for o in published if o.topic == T.recommendations]
    assert len(recommendations) == len({o.key for o in old_states})
    assert scorer.stale_embedding_states > 0

"""A published deep model's item table is adopted by ingest, and survives a restart exactly.

The trainer's own publishing path (``TrainerService.publish``: ``current`` on ``models``,
then one adopt-model message per ``clicks`` partition) announces a model stored without
torch. Ingest must move every partition's online embeddings into the model's space at that
message, keep going, and an instance restarted from the changelog must end bit-identical
to one uninterrupted pass over the same ``clicks`` sequence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from unit.core.model_store_fakes import publish_fake_model
from unit.learner_checks import learned_state

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.train import Trainer, TrainerConfig
from streamrec.consumers.train_service import TrainerService
from streamrec.export.store import ModelStore
from streamrec.online_models.user_state import decode_state
from streamrec.producers.synthetic import SyntheticStream
from streamrec.config import Settings
from streamrec.control import ADOPT_MODEL, kind_of
from streamrec.events import encode_click
from streamrec.records import Record
from snapshots import published_snapshots
from support import (applied_events, assert_offsets_applied_once, ingest_service, latest_by_key,
                     produce_raw, read_topic, running_service, user_records)

pytestmark = pytest.mark.kafka

DEEP_DIM = 24


def uninterrupted(settings: Settings, clicks: list[Record]) -> IngestProcessor:
    """One processor fed the whole ``clicks`` topic once, partition by partition, in order."""
    reference = IngestProcessor(settings)
    for partition in range(settings.partitions):
        records = sorted((r for r in clicks if r.partition == partition), key=lambda r: r.offset)
        for start in range(0, len(records), 999):  # how polls cut the stream must not matter
            reference.process(records[start:start + 999])
    return reference


def test_ingest_adopts_a_published_model_and_restarts_to_the_same_states(
        kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.replace(learn_every=16, snapshot_every=200,
                                      model_store=str(tmp_path / "models"))
    events = list(SyntheticStream(n_users=60, n_items=90, n_events=3_000, seed=11).events())
    before, during, after = events[:1_500], events[1_500:2_200], events[2_200:]
    items = sorted({e.item_id for e in events}) + ["deep-only-item"]
    message = publish_fake_model(tmp_path / "models", items, dim=DEEP_DIM, seed=4)

    def produce(batch: list) -> None:  # type: ignore[type-arg]
        produce_raw(settings, settings.topics.clicks,
                    ((e.user_id.encode(), encode_click(e)) for e in batch))

    def wait_applied(n: int) -> list[Record]:
        return read_topic(settings, settings.topics.user_state,
                          until=lambda rs: applied_events(rs) >= n, idle_s=0.5)

    with running_service(ingest_service(settings, "first")) as first:
        produce(before)
        wait_applied(len(before))
        store = ModelStore(tmp_path / "models")
        trainer = TrainerService(settings, Trainer(TrainerConfig(), store))
        try:
            trainer.publish(message)  # current on models, then adopt-model on every partition
        finally:
            trainer.close()
        produce(during)
        records = wait_applied(len(before) + len(during))
        adopted = first.processor.adoptions_by_outcome  # type: ignore[attr-defined]
        assert adopted == {"adopted": settings.partitions}

    # Every user state now carries a vector of the deep model's size.
    latest = latest_by_key(records)
    vectors = [decode_state(r.value).embedding for r in latest.values() if r.value is not None]
    assert vectors and all(v is None or len(v) == DEEP_DIM for v in vectors)
    assert sum(v is not None for v in vectors) > len(vectors) // 2
    models_topic = read_topic(settings, settings.topics.models, expect=1, idle_s=0.2)
    current = json.loads(models_topic[0].value or b"")
    assert current["version"] == message["version"]

    # More clicks while no ingest runs, then a new instance restores from the changelog.
    produce(after)
    with running_service(ingest_service(settings, "second")) as second:
        records = wait_applied(len(events))
        restarted: IngestProcessor = second.processor  # type: ignore[assignment]

    clicks = read_topic(settings, settings.topics.clicks, expect=len(events) + settings.partitions,
                        idle_s=0.2)
    controls = [r for r in clicks if kind_of(r.headers) == ADOPT_MODEL]
    assert sorted(r.partition for r in controls) == list(range(settings.partitions))
    dead = read_topic(settings, settings.topics.dlq, timeout_s=2.0, idle_s=0.0)
    assert dead == [], "an adopt-model message is never dead-lettered"

    reference = uninterrupted(settings, clicks)
    assert {u: s.learned_view() for u, s in restarted.all_states().items()} == \
        {u: s.learned_view() for u, s in reference.all_states().items()}
    for partition in range(settings.partitions):
        ours, theirs = restarted.models(partition), reference.models(partition)
        assert ours is not None and theirs is not None
        assert ours.adopted_version == theirs.adopted_version == message["version"]
        assert ours.blend.embeddings.current_dim == DEEP_DIM
        assert learned_state(ours.blend) == learned_state(theirs.blend), partition
    # The changelog's last word on each user is the uninterrupted run's final state.
    final = {r.key.decode(): decode_state(r.value).learned_view()  # type: ignore[union-attr]
             for r in latest_by_key(records).values() if r.value is not None}
    assert final == {u: s.learned_view() for u, s in reference.all_states().items()}
    assert_offsets_applied_once(records)
    # A scorer reading user-state in order meets the new-space snapshot of a partition
    # before any state whose vector has the new size.
    for partition in range(settings.partitions):
        log = [r for r in records if r.partition == partition]
        first_new_state = min(r.offset for r in user_records(log) if r.value is not None
                              and len(decode_state(r.value).embedding or ()) == DEEP_DIM)
        first_new_snapshot = min(r.offset for r, snapshot in published_snapshots(log)
                                 if snapshot.blend.embeddings.current_dim == DEEP_DIM)
        assert first_new_snapshot < first_new_state, partition

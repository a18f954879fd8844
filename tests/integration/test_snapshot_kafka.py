"""Model snapshots on a real broker: a planted pickle runs nothing; a 64 MB+ snapshot round-trips.

The services run in-process (``ProcessorService``), exactly as ``streamrec ingest`` and
``streamrec score`` run them.
"""

from __future__ import annotations

import pathlib

import pytest
from snapshots import planted_records, published_snapshots
from unit.learner_checks import learned_state

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.partition_models import SNAPSHOT_KEY
from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.consumers.snapshot_chunks import CHUNK_KEY_PREFIX
from streamrec.consumers.snapshot_codec import encode_snapshot
from streamrec.producers.synthetic import SyntheticStream
from streamrec.transport import kafka_clients
from streamrec.transport.changelog import read_changelog
from streamrec.config import Settings
from streamrec.events import ClickEvent, encode_click
from support import ingest_service, read_topic, running_service, score_service

pytestmark = pytest.mark.kafka

MiB = 1024 * 1024


def produce_pinned(settings: Settings, topic: str,
                   records: list[tuple[int | None, bytes, bytes | None]]
                   ) -> None:
    """(partition, key, value) as anyone with write access could, no transaction."""
    producer = kafka_clients.producer(settings, linger_ms=5, max_request_size=32 * MiB)
    for partition, key, value in records:
        producer.send(topic, key=key, value=value, partition=partition)
    producer.flush(timeout=60)
    producer.close()


def test_a_pickle_planted_in_user_state_executes_nothing_on_the_broker(
        kafka_settings: Settings, tmp_path: pathlib.Path) -> None:
    settings = kafka_settings.replace(learn_every=16, snapshot_every=64)
    topics = settings.topics
    marker = tmp_path / "pwned"
    planted = [(p, r.key, r.value) for p in range(settings.partitions)
               for r in planted_records(marker, topics.user_state, partition=p)]
    produce_pinned(settings, topics.user_state, planted)  # type: ignore[arg-type]
    events = list(SyntheticStream(n_users=30, n_items=60, n_events=600, seed=5).events())

    with running_service(ingest_service(settings)) as ingest, \
            running_service(score_service(settings)) as scorer:
        # Ingest restored every partition over the pickles: skipped, nothing ran.
        assert not marker.exists()
        assert ingest.processor.skipped_by_reason[(topics.user_state, "snapshot_pickle")] == \
            3 * settings.partitions  # type: ignore[attr-defined]
        # Services keep working: the scorer ranks with ingest's real snapshots once they come.
        # A trigger ranks with the snapshots before it in the log (never a later one), so the
        # second half of the clicks goes in once ingest has written a real snapshot: however
        # ingest's polls cut the first half, triggers after a snapshot follow.
        half = len(events) // 2
        produce_pinned(settings, topics.clicks, [
            (None, e.user_id.encode(), encode_click(e)) for e in events[:half]])
        planted_offsets = {(p, offset) for p, _, _ in planted for offset in (0, 1, 2, 3)}
        read_topic(settings, topics.user_state, timeout_s=90.0, idle_s=0.0, until=lambda rs: any(
            r.key == SNAPSHOT_KEY and (r.partition, r.offset) not in planted_offsets for r in rs))
        produce_pinned(settings, topics.clicks, [
            (None, e.user_id.encode(), encode_click(e)) for e in events[half:]])
        recommendations = read_topic(settings, topics.recommendations, timeout_s=90.0, until=lambda rs: any(
            recommendation_decoder.decode(r.value).model_version.endswith("online-blend")
            for r in rs), idle_s=0.5)
        assert recommendations
        assert not marker.exists()
        skipped = scorer.processor.skipped_by_reason  # type: ignore[attr-defined]
        assert skipped[(topics.user_state, "snapshot_pickle")] == 3 * settings.partitions

    # A restart restores from the valid snapshots written after the pickles.
    log = read_changelog(settings, topics.user_state,
                         list(range(settings.partitions)))
    restored = IngestProcessor(settings)
    starts = []
    for partition, records in log.items():
        restored.restore(partition, records)
        starts.append(restored.rewarm_from(partition))
    assert not marker.exists()
    assert any(start for start in starts), "some partition restored from a real snapshot"
    assert restored.skipped_by_reason[(topics.user_state, "snapshot_pickle")] == \
        3 * settings.partitions


def long_id_clicks(n: int, start: int = 0) -> list[ClickEvent]:
    """One click per user on its own item, ids of 244 characters: a snapshot of ~2.6 KB each."""
    pad = "x" * 230
    return [ClickEvent(event_id=f"e{i}", user_id=f"user-{i:08d}-{pad}",
                       item_id=f"item-{i:08d}-{pad}", type="click", ts=1e6 + i)
            for i in range(start, start + n)]


def test_a_snapshot_over_64_mb_is_written_and_restored_bit_identically(
        kafka_settings: Settings) -> None:
    n_events = 128 * 220  # a multiple of learn_every: the snapshot holds every event
    # Big polls: fewer transactions (each costs a broker round trip or two).
    settings = kafka_settings.replace(learn_every=128, snapshot_every=n_events,
                                      batch_size=5_000)
    topics = settings.topics
    events = long_id_clicks(n_events)
    # All in partition 0, so that one partition's snapshot is the big one.
    produce_pinned(settings, topics.clicks,
                   [(0, e.user_id.encode(), encode_click(e)) for e in events])
    with running_service(ingest_service(settings)) as service:
        read_topic(settings, topics.user_state, timeout_s=120.0, idle_s=0.0,
                   until=lambda rs: any(r.key == SNAPSHOT_KEY for r in rs))
        live = service.processor.models(0)  # type: ignore[attr-defined]
    assert live is not None and live.pending == [] and live.snapshot_offset == n_events - 1

    log = read_changelog(settings, topics.user_state, [0])[0]
    chunks = [r for r in log if r.key is not None and r.key.startswith(CHUNK_KEY_PREFIX)]
    (named, on_topic), = published_snapshots(log)
    payload = b"".join(r.value for r in chunks)  # type: ignore[misc]
    assert len(payload) > 64 * MiB and len(chunks) >= 17
    assert all(len(r.value) <= settings.snapshot_chunk_bytes for r in chunks)  # type: ignore[arg-type]
    assert max(r.offset for r in chunks) < named.offset  # chunks first, then the manifest
    # Identical bytes: the live models, the topic's payload, and each restored copy re-encoded.
    expected = encode_snapshot(0, n_events - 1, None, live.blend)
    assert payload == expected
    ingest = IngestProcessor(settings)
    assert ingest.restore(0, log) == n_events
    assert ingest.rewarm_from(0) == n_events and not ingest.skipped_by_reason
    scorer = ScoreProcessor(settings)
    scorer.restore(0, log)
    assert not scorer.skipped_by_reason
    copies = [ingest.models(0).blend, scorer._models[0], on_topic.blend]  # type: ignore[union-attr]
    for blend in copies:
        assert encode_snapshot(0, n_events - 1, None, blend) == expected
    # The same vectors for every user, the same rankings, and the same next step.
    users = [e.user_id for e in events]
    vectors = [live.blend.user_vector(u) for u in users]
    assert all(v is not None for v in vectors)
    for blend in copies:
        assert [blend.user_vector(u) for u in users] == vectors
    probes = users[:: n_events // 40]
    rankings = [live.blend.recommend_explained(u, 10) for u in probes]
    more = long_id_clicks(512, start=n_events) + [
        ClickEvent(event_id=f"r{i}", user_id=users[i * 7], item_id=events[i * 13].item_id,
                   type="click", ts=2e6 + i) for i in range(256)]
    for blend in [live.blend, *copies]:
        assert [blend.recommend_explained(u, 10) for u in probes] == rankings
        for start in range(0, len(more), 128):
            blend.learn_many(more[start:start + 128])
    after = learned_state(live.blend)
    assert all(learned_state(blend) == after for blend in copies)

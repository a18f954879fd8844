"""On the real broker, as an app uses streamrec: clicks published with the SDK come back
through ``RecommendationReader`` and through ``recommend()``, and every message on
``clicks``, ``requests``, ``recommendations`` and ``user-state`` conforms to the schema
``streamrec schema --topic`` prints (checked with tests/schema_check.py).

One pipeline run (module fixture) feeds both tests: ingest and the scorer run in threads.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import pytest

from schema_check import errors
from streamrec.client import (ClickPublisher, Recommendation, RecommendationClient,
                              RecommendationReader, RecommendationTimeout, Settings, recommend)
from streamrec.consumers.snapshot_chunks import is_snapshot_key
from streamrec.producers.synthetic import SyntheticStream
from streamrec.records import Record
from streamrec.transport.topics import create_topics
from support import ingest_service, read_topic, running_service, score_service

pytestmark = pytest.mark.kafka

ASKED = 12  # users asked through recommend(), beside the reader


@dataclass
class ReadSideRun:
    settings: Settings
    users: set[str]
    events: int
    read: list[Recommendation] = field(default_factory=list)
    replies: dict[str, Recommendation] = field(default_factory=dict)
    request_ids: dict[str, str] = field(default_factory=dict)  # user -> id the scorer saw
    one_off: Recommendation | None = None
    unknown_user_reply: Recommendation | None = None
    reply_s: list[float] = field(default_factory=list)


@pytest.fixture(scope="module")
def read_side(kafka_bootstrap: str, kafka_admin) -> Iterator[ReadSideRun]:
    prefix = f"t{uuid.uuid4().hex[:12]}-"
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix,
                        ingest_group=f"{prefix}ingest", score_group=f"{prefix}score",
                        transactional_id_prefix=prefix.rstrip("-"))
    names = create_topics(settings, admin=kafka_admin)
    events = list(SyntheticStream(n_users=60, n_items=120, n_events=1_200, seed=11).events())
    run = ReadSideRun(settings, {e.user_id for e in events}, len(events))
    reader = RecommendationReader(settings)  # from now on
    done = threading.Event()

    def follow() -> None:
        reader.run(run.read.append, until=lambda: {r.user_id for r in run.read} >= run.users,
                   timeout_s=120)
        done.set()

    try:
        with running_service(ingest_service(settings)), running_service(score_service(settings)):
            follower = threading.Thread(target=follow, daemon=True)
            follower.start()
            with ClickPublisher.from_settings(settings) as publisher:
                for event in events:
                    publisher.publish(event)
            assert done.wait(150), "the reader did not see every user within 150 s"
            with RecommendationClient(settings) as client:
                for user in sorted(run.users)[:ASKED]:
                    started = time.monotonic()
                    run.replies[user] = client.recommend(user, k=3, timeout=30.0)
                    run.reply_s.append(time.monotonic() - started)
                run.unknown_user_reply = client.recommend("never-clicked", timeout=30.0)
            run.one_off = recommend(settings, sorted(run.users)[-1], timeout=30.0)
        yield run
    finally:
        reader.close()
        with contextlib.suppress(Exception):
            kafka_admin.delete_topics(names)


def test_clicks_come_back_through_the_reader_and_recommend(read_side: ReadSideRun) -> None:
    run = read_side
    assert {r.user_id for r in run.read} >= run.users
    assert all(r.trigger_kind == "event" for r in run.read[:len(run.users)])
    assert len(run.replies) == ASKED
    trigger_ids = set()
    for user, reply in run.replies.items():
        assert reply.user_id == user and reply.trigger_kind == "request"
        # k=3 was asked, and 120 items leave every user far more than 3 unseen ones.
        assert len(reply.items) == 3, reply.items
        assert len({item.item_id for item in reply.items}) == 3, reply.items
        trigger_ids.add(reply.trigger_id)
    assert len(trigger_ids) == ASKED  # one request id per call, each answered by its own
    assert run.one_off is not None and run.one_off.trigger_kind == "request"
    assert run.one_off.user_id == sorted(run.users)[-1]
    # A user without history still gets an answer (popular items), not a timeout.
    assert run.unknown_user_reply is not None and run.unknown_user_reply.items
    print(f"recommend(): {len(run.reply_s)} replies, max {max(run.reply_s) * 1000:.0f} ms, "
          f"median {sorted(run.reply_s)[len(run.reply_s) // 2] * 1000:.0f} ms")


def test_no_scorer_is_a_timeout(read_side: ReadSideRun) -> None:
    started = time.monotonic()
    with pytest.raises(RecommendationTimeout, match="within 1 s"):
        recommend(read_side.settings, "u-late", timeout=1.0)  # the scorer stopped
    assert time.monotonic() - started < 5


def _printed_schema(topic: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "streamrec.app.cli", "schema", "--topic", topic],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _values(records: list[Record]) -> list[object]:
    return [json.loads(r.value) for r in records
            if r.value is not None and not is_snapshot_key(r.key)]


def test_real_messages_of_every_topic_conform_to_the_printed_schemas(read_side) -> None:
    settings = read_side.settings
    topics = {"clicks": settings.topics.clicks, "requests": settings.topics.requests,
              "recommendations": settings.topics.recommendations,
              "user-state": settings.topics.user_state}
    # At least: every click; every request sent (12 + never-clicked + one-off + u-late);
    # a recommendation and a state per user.
    least = {"clicks": read_side.events, "requests": ASKED + 3,
             "recommendations": len(read_side.users) + ASKED + 2,
             "user-state": len(read_side.users)}
    for name, topic in topics.items():
        schema = _printed_schema(name)
        records = read_topic(settings, topic, idle_s=1.0,
                             until=lambda got, n=least[name]: len(_values(got)) >= n)
        values = _values(records)
        assert len(values) >= least[name], (name, len(values))
        problems = [(value, found) for value in values if (found := errors(value, schema))]
        assert not problems, f"{name}: {len(problems)} of {len(values)}, first {problems[0]}"

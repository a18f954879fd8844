"""Scoring a Kafka replay from what the evaluator recorded: hand-made timelines, known answers."""

from __future__ import annotations

import math

import pytest

from streamrec.app.cli import main
from streamrec.app.evaluation.via_kafka_scoring import (SYSTEM_NAME, ReceivedRecommendation,
                                                    latency_summary, score_via_kafka)
from streamrec.events import ClickEvent


def click(event_id: str, user: str, item: str, ts: float = 0.0) -> ClickEvent:
    return ClickEvent(event_id=event_id, user_id=user, item_id=item, type="click", ts=ts)


def rec(user: str, trigger: str, items: str, received_s: float) -> ReceivedRecommendation:
    return ReceivedRecommendation(user, trigger, tuple(items.split()), received_s, 5.0, 0.5)


def overall(result):
    return result.summary()[SYSTEM_NAME]["overall"]


def test_only_a_recommendation_received_before_the_event_was_produced_can_hit():
    events = [click("e1", "u", "a"), click("e2", "u", "b"), click("e3", "u", "c")]
    received = [rec("u", "e1", "x b", 10.1), rec("u", "e2", "c y", 10.3)]
    # e2 sees the recommendation of e1 (rank 2); e3 was produced before e2's arrived, so it
    # is scored against e1's, where c is missing: a miss, though c is first in e2's.
    result, kafka = score_via_kafka(events, [10.0, 10.2, 10.25], [-1, 0, 0], received, (1, 2), 10)
    stats = overall(result)
    assert stats["evaluated"] == 2 and stats["cold_events"] == 1
    assert stats["hr@2"] == 0.5 and stats["hr@1"] == 0.0
    assert stats["ndcg@2"] == pytest.approx(0.5 / math.log2(3))
    assert kafka["warm_events_without_recommendation"] == 0
    # e2 was scored against its user's previous event's recommendation, e3 was not.
    assert kafka["warm_events_with_fresh_recommendation_share"] == 0.5


def test_a_warm_user_without_any_recommendation_yet_is_a_miss():
    events = [click("e1", "u", "a"), click("e2", "u", "b")]
    result, kafka = score_via_kafka(events, [1.0, 1.001], [-1, -1],
                                    [rec("u", "e2", "z", 1.2)], (10,), 10)
    assert overall(result)["hr@10"] == 0.0
    assert kafka["warm_events_without_recommendation"] == 1


def test_items_seen_after_the_trigger_are_stale_not_violations():
    events = [click("e1", "u", "a"), click("e2", "u", "b"), click("e3", "u", "c")]
    # Triggered by e1, it may hold b (seen only at e2): dropped, no blame. It holds a,
    # which the user had at the trigger: that is the scorer's fault.
    received = [rec("u", "e1", "b a c", 5.05)]
    result, _ = score_via_kafka(events, [5.0, 5.1, 5.2], [-1, 0, 0], received, (1,), 10)
    assert result.summary()[SYSTEM_NAME]["exclusion_violations"] == 2  # a, once per event
    # e2 keeps [b, c]: b first, a hit. e3 keeps [c]: b is stale now and a excluded, so
    # c ranks first, a hit too (stale items never push the event's item down).
    assert overall(result)["hr@1"] == 1.0


def test_latencies_per_trigger_and_per_reflected_event():
    # e1 and e2 of u land in one ingest batch: one recommendation, triggered by e2.
    events = [click("e1", "u", "a"), click("e2", "u", "b"), click("e3", "v", "a")]
    received = [rec("u", "e2", "c", 2.030), rec("v", "e3", "c", 2.050)]
    result, kafka = score_via_kafka(events, [2.000, 2.010, 2.020], [-1, -1, -1], received,
                                    (10,), 10)
    e2e = kafka["e2e_latency_ms"]
    assert e2e["count"] == 2 and e2e["max"] == pytest.approx(30.0)
    assert e2e["p50"] == pytest.approx(25.0)
    reflected = kafka["event_to_reflecting_recommendation_ms"]
    assert reflected["count"] == 3 and reflected["max"] == pytest.approx(30.0)
    assert kafka["events_unreflected"] == 0 and kafka["recommendations_received"] == 2
    assert kafka["scorer_end_to_end_ms"]["p50"] == 5.0
    assert kafka["events_per_s_produced"] == pytest.approx(3 / 0.020)
    assert overall(result)["events_per_s"] == pytest.approx(3 / 0.020)
    assert overall(result)["latency_p99_ms"] == pytest.approx(30.0, rel=0.05)


def test_unknown_triggers_and_unreflected_events_are_counted():
    events = [click("e1", "u", "a"), click("e2", "u", "b")]
    received = [rec("u", "request-1", "c", 1.0), rec("u", "e1", "c", 1.5)]
    _, kafka = score_via_kafka(events, [1.0, 1.2], [-1, -1], received, (10,), 10)
    assert kafka["recommendations_unmatched"] == 1 and kafka["events_unreflected"] == 1


def test_inputs_must_line_up_and_empty_latencies_are_null():
    with pytest.raises(ValueError):
        score_via_kafka([click("e1", "u", "a")], [1.0], [], [], (10,), 10)
    assert latency_summary([])["p50"] is None
    assert latency_summary([float("nan"), 2.0])["count"] == 1


def test_via_kafka_cli_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STREAMREC_CONNECT_TIMEOUT_S", "1")  # nothing listens: no need to wait 10 s
    path = tmp_path / "clicks.jsonl"
    path.write_text('{"event_id":"e1","user_id":"u","item_id":"a","type":"click","ts":1}\n')
    base = ["replay", str(path), "--format", "jsonl", "--out", str(tmp_path / "out"),
            "--no-progress", "--systems", "most-popular", "--via-kafka"]
    assert main([*base, "--protocol", "last-item"]) == 2
    assert "prequential" in capsys.readouterr().err
    assert main([*base, "--bootstrap-servers", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamrec: error: cannot reach Kafka at 127.0.0.1:1")
    with pytest.raises(SystemExit):
        main([*base, "--speed", "0"])

"""The test-side JSON Schema checker (tests/schema_check.py) fails where it must: each
planted break of a printed schema is found, and a keyword it does not know is refused."""

from __future__ import annotations

import json

import pytest

from schema_check import UnknownKeyword, errors
from streamrec.app.topic_schemas import TOPIC_SCHEMAS, topic_schema
from streamrec.events import ClickEvent, encode_click
from streamrec.messages import Recommendation, ScoredItem, encode_request
from streamrec.online_models.user_state import UserState, encode_state


def _recommendation() -> dict:
    rec = Recommendation(user_id="u1", trigger_id="r1", trigger_kind="request",
                         model_version="online-blend",
                         items=[ScoredItem("i1", 0.5, {"fm": 0.25, "popularity": 0.25})],
                         event_ts=1.5, end_to_end_ms=None, score_ms=0.2, scored_at_ms=17)
    import msgspec
    return json.loads(msgspec.json.encode(rec))


GOOD = {
    "clicks": lambda: json.loads(encode_click(ClickEvent(event_id="e1", user_id="u1",
                                                         item_id="i1", type="click", ts=2.0))),
    "requests": lambda: json.loads(encode_request("r1", "u1", 5, ["i9"])),
    "recommendations": _recommendation,
    "user-state": lambda: json.loads(encode_state(UserState(
        user_id="u1", recent_items=["i1"], recent_ts=[2.0], new_events=[("i1", 2.0)],
        embedding=[0.1, 0.2]))),
}


def test_every_topic_has_a_good_example() -> None:
    assert set(GOOD) == set(TOPIC_SCHEMAS)


@pytest.mark.parametrize("topic", sorted(GOOD))
def test_an_encoded_message_conforms(topic: str) -> None:
    assert errors(GOOD[topic](), topic_schema(topic)) == []


@pytest.mark.parametrize(("topic", "break_it", "expected"), [
    ("clicks", lambda m: m.pop("user_id"), "missing required 'user_id'"),
    ("clicks", lambda m: m.update(type="hover"), "is not one of"),
    ("clicks", lambda m: m.update(item_id=""), "shorter than 1"),
    ("clicks", lambda m: m.update(item_id="x" * 257), "longer than 256"),
    ("clicks", lambda m: m.update(ts="yesterday"), "str is not number"),
    ("clicks", lambda m: m.update(context={"a": [1]}), "matches none of anyOf"),
    ("requests", lambda m: m.update(k=2.5), "matches none of anyOf"),
    ("requests", lambda m: m.update(exclude_items=[3]), "int is not string"),
    ("recommendations", lambda m: m["items"][0].pop("score"), "missing required 'score'"),
    ("recommendations", lambda m: m["items"][0]["components"].update(fm="x"), "is not number"),
    ("recommendations", lambda m: m.update(scored_at_ms=True), "bool is not integer"),
    ("recommendations", lambda m: m.update(items={}), "dict is not array"),
    ("user-state", lambda m: m.update(new_events=[["i1"]]), "fewer than 2 items"),
    ("user-state", lambda m: m.update(new_events=[["i1", 1.0, 2.0]]), "more than 2 items"),
    ("user-state", lambda m: m.update(new_events=[[1, 1.0]]), "int is not string"),
])
def test_a_planted_break_is_found(topic: str, break_it, expected: str) -> None:
    message = GOOD[topic]()
    break_it(message)
    found = errors(message, topic_schema(topic))
    assert any(expected in problem for problem in found), found


def test_a_keyword_the_checker_does_not_know_is_refused() -> None:
    with pytest.raises(UnknownKeyword):
        errors("x", {"type": "string", "pattern": "^x$"})

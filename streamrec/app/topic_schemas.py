"""The JSON Schema (2020-12) of each topic's message, as ``streamrec schema --topic`` prints it.

Generated from the very types the services encode and decode (msgspec), so a schema cannot
drift from the code: ``clicks`` (``ClickEvent``), ``requests`` (``RecommendationRequest``),
``recommendations`` (``Recommendation``) and ``user-state`` (``UserState``).
``tests/integration/test_app_read_side.py`` validates real messages of each against these.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import msgspec

from streamrec.events import click_json_schema
from streamrec.messages import Recommendation, RecommendationRequest
from streamrec.online_models.user_state import UserState

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _schema(kind: type, title: str, description: str) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        schema: dict[str, Any] = msgspec.json.schema(kind)
        schema.update({"$schema": DIALECT, "title": title, "description": description})
        return schema
    return build


TOPIC_SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "clicks": click_json_schema,
    "requests": _schema(
        RecommendationRequest, "streamrec recommendation request v1",
        "Published to the requests topic keyed by user_id. The scorer answers on "
        "recommendations with trigger_kind \"request\" and trigger_id = request_id; k is "
        "clamped to the scorer's max_k (absent or null: its top_k). A malformed request is "
        "dead-lettered."),
    "recommendations": _schema(
        Recommendation, "streamrec recommendation v1",
        "Published by the scorer to the recommendations topic keyed by user_id, in "
        "transactions: read with isolation.level=read_committed. trigger_kind is \"event\" "
        "(the user's state changed; trigger_id is the click's event_id) or \"request\" "
        "(trigger_id is the request_id). Each item's components are the scores of the "
        "sources that put it there. Unknown fields may be added; ignore them."),
    "user-state": _schema(
        UserState, "streamrec user state v1",
        "Ingest's changelog (compacted), keyed by user_id, written in transactions "
        "(read_committed). A null value (tombstone) is a forgotten user. Records whose key "
        "starts with \"__streamrec_snapshot__\" are ingest's model snapshots, not user states."),
}


def topic_schema(topic: str) -> dict[str, Any]:
    """The schema of ``topic`` (one of ``TOPIC_SCHEMAS``), else KeyError."""
    return TOPIC_SCHEMAS[topic]()


def schema_text(topic: str) -> str:
    return json.dumps(topic_schema(topic), indent=2, sort_keys=True)

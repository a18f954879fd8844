"""The ``recommendations`` and ``requests`` messages: the contract between the scorer and apps.

Kept at the contracts floor so an app-side reader (``streamrec.producers.reader``) decodes what the
scorer (``streamrec.consumers.score``, which re-exports these names) encodes, and an app's
request (``streamrec.producers.request_reply``) is what the scorer decodes, without importing
the scorer (and with it river and numpy).
"""

from __future__ import annotations

import msgspec


class ScoredItem(msgspec.Struct, frozen=True):
    item_id: str
    score: float
    components: dict[str, float]


class Recommendation(msgspec.Struct, kw_only=True):
    """One message on ``recommendations``."""

    user_id: str
    trigger_id: str
    trigger_kind: str  # "event" (a state change) or "request"
    model_version: str
    items: list[ScoredItem]
    event_ts: float
    # Milliseconds: click produced -> recommendation ranked, and ranking alone.
    end_to_end_ms: float | None
    score_ms: float
    scored_at_ms: int


recommendation_decoder = msgspec.json.Decoder(Recommendation)


class RecommendationRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One message on ``requests``, keyed by user_id; answered on ``recommendations`` by a
    ``Recommendation`` with ``trigger_kind == "request"`` and ``trigger_id == request_id``.

    The scorer decodes requests with this type (``streamrec.consumers.score`` re-exports it).
    """

    request_id: str
    user_id: str
    k: int | None = None
    exclude_items: list[str] = []


_request_encoder = msgspec.json.Encoder()


def encode_request(request_id: str, user_id: str, k: int | None = None,
                   exclude_items: list[str] | None = None) -> bytes:
    """A request message for ``requests``, as an app sends one."""
    return _request_encoder.encode(RecommendationRequest(
        request_id=request_id, user_id=user_id, k=k, exclude_items=exclude_items or []))

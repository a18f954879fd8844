"""The ``recommendations`` message: the contract between the scorer and every reader.

Kept at the contracts floor so an app-side reader (``streamrec.producers.reader``) decodes what the
scorer (``streamrec.consumers.score``, which re-exports these names) encodes, without importing it.
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

"""Replay through the real Kafka path (``streamrec replay --via-kafka``): not built yet.

The plan (issue 3, item 5): produce the log into ``clicks``, let the ingest and score
consumers run, read ``recommendations`` back and score them with the same metrics, adding
end-to-end latency (click produced → recommendation received).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from streamrec.events import ClickEvent


class ViaKafkaNotImplemented(NotImplementedError):
    """``--via-kafka`` replay does not exist yet; in-process replay does."""


def run_replay_via_kafka(events: Sequence[ClickEvent], config: Mapping[str, Any]) -> None:
    """Replay ``events`` through a Kafka broker and score the recommendations read back."""
    raise ViaKafkaNotImplemented(
        "--via-kafka replay is not yet implemented; run without --via-kafka for the "
        "in-process replay")

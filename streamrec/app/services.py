"""The one place that says how ingest and score run on Kafka: inputs, group, restore rule.

The CLI (``streamrec ingest`` / ``streamrec score``), replay via Kafka, the tests and the
benchmarks all build their services here, so none of them can run a scorer that restores
past its committed position, reads the wrong inputs or joins another service's group.

``processor`` defaults to a fresh ``IngestProcessor`` / ``ScoreProcessor`` for ``settings``;
pass one to keep a reference to it (the CLI binds the scorer's metrics and deep model) or
to wrap it (benchmarks count its batches). Other keywords go to ``ProcessorService``.
"""

from __future__ import annotations

from typing import Any

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.score import ScoreProcessor
from streamrec.config import Settings
from streamrec.transport.runtime import ProcessorService


def ingest_service(settings: Settings, instance_id: str, *, processor: Any = None,
                   group_id: str | None = None, **options: Any) -> ProcessorService:
    """Ingest: ``clicks`` in, ``user-state`` (and dead letters) out, in the ingest group."""
    return ProcessorService(
        processor if processor is not None else IngestProcessor(settings), settings,
        input_topics=[settings.topics.clicks],
        group_id=group_id if group_id is not None else settings.ingest_group_id,
        instance_id=instance_id, **options)


def score_service(settings: Settings, instance_id: str, *, processor: Any = None,
                  group_id: str | None = None, **options: Any) -> ProcessorService:
    """Score: ``user-state`` and ``requests`` in, ``recommendations`` out, in the score group.

    The scorer's changelog *is* its input, so it restores only up to its committed
    position: the records after it are consumed, and would otherwise be applied twice.
    """
    return ProcessorService(
        processor if processor is not None else ScoreProcessor(settings), settings,
        input_topics=[settings.topics.user_state, settings.topics.requests],
        group_id=group_id if group_id is not None else settings.score_group_id,
        instance_id=instance_id, restore_to_committed=True, **options)

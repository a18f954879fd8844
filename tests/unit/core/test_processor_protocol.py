"""Every processor a transport drives has every member of ``streamrec.processor.Processor``."""

from __future__ import annotations

import pytest

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.score import ScoreProcessor
from streamrec.config import Settings
from streamrec.processor import Processor, ProcessorDefaults


@pytest.mark.parametrize("make", [IngestProcessor, ScoreProcessor])
def test_the_services_processors_are_processors(make) -> None:  # type: ignore[no-untyped-def]
    processor = make(Settings())
    assert isinstance(processor, Processor)
    assert processor.rejected_by_reason == {} and processor.skipped_by_reason == {}


def test_the_scorer_has_no_models_to_rewarm() -> None:
    scorer = ScoreProcessor(Settings())
    assert scorer.rewarm_from(0) is None and scorer.adoptions_by_outcome == {}


def test_a_processor_missing_a_member_is_not_one() -> None:
    class NoDeadLetters(ProcessorDefaults):
        changelog_topic = "state"
        rejected_by_reason: dict = {}
        skipped_by_reason: dict = {}

        def restore(self, partition, changelog):  # type: ignore[no-untyped-def]
            return 0

        def drop(self, partitions):  # type: ignore[no-untyped-def]
            pass

        def process(self, batch):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    assert not isinstance(NoDeadLetters(), Processor)


def test_processors_without_a_state_topic_restore_none() -> None:
    ingest = IngestProcessor(Settings())
    assert ingest.state_topic is None and ingest.restore_state(0, []) == 0


def test_the_scorer_never_reads_its_state_topic_globally() -> None:
    # The global reader reads global_topics whole: scorer-state there would be applied on
    # top of its restore (and the transports refuse it: check_state_topic).
    settings = Settings(topic_prefix="p-")
    scorer = ScoreProcessor(settings)
    assert settings.topics.scorer_state not in scorer.global_topics
    assert scorer.state_topic in (None, settings.topics.scorer_state)

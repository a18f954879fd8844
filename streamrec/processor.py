"""The one interface every transport drives a processor through.

The Kafka runtime (``streamrec.transport.runtime``) and the in-process bus (``streamrec.transport.bus``) call
exactly these members, nothing found by ``getattr``: a processor that runs on one runs on the
other, with the same lifecycle. ``restore`` and ``drop`` scope state by partition;
``rewarm_from``/``rewarm`` re-feed committed inputs to models that are snapshotted less often
than every batch; the three counters are running tallies the transport turns into metrics.

``global_topics``/``learn_global`` are the item-side input: every partition of those topics,
owned or not, is fed to ``learn_global`` beside the owned batches (``streamrec.transport.global_reader``).

``ProcessorDefaults`` gives a processor without models, adoptions or global input the neutral
answers.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable, Mapping, Protocol, runtime_checkable

from streamrec.records import Output, ProcessResult, Record

log = logging.getLogger(__name__)


@runtime_checkable
class Processor(Protocol):
    # The compacted topic this processor's state is restored from.
    changelog_topic: str
    # Topics whose every partition the transport also feeds to ``learn_global`` (item-side
    # knowledge learned from all users); empty: no global input.
    global_topics: tuple[str, ...]

    def restore(self, partition: int, changelog: list[Record]) -> int:
        """Rebuild one partition's state from its changelog; return how many keys."""
        ...

    def drop(self, partitions: list[int]) -> None:
        """Forget these partitions' state exactly (revoked, lost, or a failed session)."""
        ...

    def process(self, batch: list[Record]) -> ProcessResult: ...

    def dead_letter(self, record: Record, reason: str, detail: str) -> Output | None:
        """The message that dead-letters a record whose processing kept raising, or None
        for an input without a dead-letter topic (the processor counts the skip)."""
        ...

    def rewarm_from(self, partition: int) -> int | None:
        """First committed input offset the partition's models must learn again (None: none)."""
        ...

    def rewarm(self, partition: int, records: Iterable[Record]) -> None: ...

    def learn_global(self, records: list[Record]) -> None:
        """Learn item-side knowledge from records of any partition of ``global_topics``
        (owned ones included: the processor ignores what it owns). Never raises for bad data."""
        ...

    # Running tallies: dead letters by reason, skipped inputs by (topic, reason), adopt-model
    # messages by outcome.
    @property
    def rejected_by_reason(self) -> Mapping[str, int]: ...

    @property
    def skipped_by_reason(self) -> Mapping[tuple[str, str], int]: ...

    @property
    def adoptions_by_outcome(self) -> Mapping[str, int]: ...


class ProcessorDefaults:
    """Neutral answers for a processor without re-warmed models, model adoptions or global input."""

    global_topics: tuple[str, ...] = ()

    def learn_global(self, records: list[Record]) -> None:
        pass

    def rewarm_from(self, partition: int) -> int | None:
        return None

    def rewarm(self, partition: int, records: Iterable[Record]) -> None:
        raise RuntimeError("rewarm called, but rewarm_from never asks for it")

    @property
    def adoptions_by_outcome(self) -> Mapping[str, int]:
        return Counter()


def rewarm_each(processor: Processor, partition: int, records: Iterable[Record]) -> None:
    """Re-feed committed inputs to a partition's models, one record at a time.

    A committed record that raises here (a poisoned record that was dead-lettered, so never
    learned in the first place) is skipped instead of failing every restore of its
    partition, which would stop the partition for good. Both transports rewarm through this.
    """
    for record in records:
        try:
            processor.rewarm(partition, [record])
        except Exception as error:  # noqa: BLE001 - see above
            log.warning("rewarming a committed input raised; skipped",
                        extra={"topic": record.topic, "partition": record.partition,
                               "offset": record.offset, "error_type": type(error).__name__})

"""The one interface every transport drives a processor through.

The Kafka runtime (``streamrec.transport.runtime``) and the in-process bus (``streamrec.transport.bus``) call
exactly these members, nothing found by ``getattr``: a processor that runs on one runs on the
other, with the same lifecycle. ``restore`` and ``drop`` scope state by partition;
``rewarm_from``/``rewarm`` re-feed committed inputs to models that are snapshotted less often
than every batch; the three counters are running tallies the transport turns into metrics.

``global_topics`` are the item-side input: every partition of those topics is read, the owned
ones by the group's consumer and the others by a global reader (``streamrec.transport.global_reader``),
and their records reach ``process`` merged in event-time order (``event_time``;
``streamrec.transport.event_time``). A record of a partition the member does not own is marked
``Record.owned = False``: it informs the processor's item-side knowledge, is never answered
and never committed by this member.

``state_topic`` is a compacted topic a processor writes its *own* state to (the scorer's
learned fusion, ``scorer-state``), as ordinary ``Output``s of ``process`` pinned to the input
partition's number (``Output.partition``): they are committed in the same transaction as the
batch's other outputs and its input offsets, so the end of that topic's partition is exactly
the committed position. A partition's new owner calls ``restore_state`` with every committed
record of it (oldest first; an empty list for an empty partition) *before* ``restore``, in
every path that restores (``streamrec.transport.runtime``, ``streamrec.transport.bus_runner``).
The topic is never an input, a changelog or a global topic (``check_state_topic``).

``ProcessorDefaults`` gives a processor without models, adoptions, global input or a state
topic of its own the neutral answers.
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
    # Topics whose every partition the transport merges into the batches (item-side
    # knowledge learned from all users); empty: no global input.
    global_topics: tuple[str, ...]
    # The compacted topic the processor writes its own state to (as outputs of ``process``,
    # partition = the input partition's number; value None = tombstone) and that is restored
    # through ``restore_state``; None: no such topic.
    state_topic: str | None

    def restore_state(self, partition: int, records: list[Record]) -> int:
        """Rebuild one partition's own state from every committed record of ``state_topic``'s
        partition, oldest first (empty if there are none); return how many keys. Called
        before ``restore`` of the same partition."""
        ...

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

    def event_time(self, record: Record) -> float | None:
        """The event time of a ``global_topics`` record, by which the transport merges their
        partitions; None if it has none (it takes its partition's previous one). Never
        raises for bad data."""
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
    """Neutral answers for a processor without re-warmed models, model adoptions, global input
    or a state topic."""

    global_topics: tuple[str, ...] = ()
    state_topic: str | None = None

    def restore_state(self, partition: int, records: list[Record]) -> int:
        return 0

    def event_time(self, record: Record) -> float | None:
        return None

    def rewarm_from(self, partition: int) -> int | None:
        return None

    def rewarm(self, partition: int, records: Iterable[Record]) -> None:
        raise RuntimeError("rewarm called, but rewarm_from never asks for it")

    @property
    def adoptions_by_outcome(self) -> Mapping[str, int]:
        return Counter()


def check_state_topic(processor: Processor, input_topics: list[str]) -> None:
    """Refuse a ``state_topic`` that the transport also reads another way.

    Its records are restored whole, up to the committed end: consumed as an input, merged
    as a global topic or restored as the changelog as well, they would be applied twice.
    Both transports check it when they are built.
    """
    topic = processor.state_topic
    if topic is None:
        return
    if topic in input_topics or topic in processor.global_topics \
            or topic == processor.changelog_topic:
        raise ValueError(f"state topic {topic!r} is also an input, a global topic or the "
                         f"changelog of this processor: its records would be applied twice")


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

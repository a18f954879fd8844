"""Poison-pill policy: a record whose processing keeps raising is dead-lettered, not retried forever.

Processors are pure, so an exception out of ``process(batch)`` is never a transport error:
it is a bug, or a hostile record a decoder let through. Retrying the batch as a whole would
fail on the same record forever and the partition would never move. Instead (the shape of
arroyo's ``DlqPolicy``, with exactly-once commits kept):

1. nothing of the failed batch is committed, and the state of its partitions is restored
   from the changelog (``restore``), so no half-applied record survives;
2. the batch's records are processed again one at a time, each committed with its outputs
   and offset in its own transaction (``commit``), so every good record is applied once;
3. a record that raises is retried after another restore of its partition, up to
   ``max_attempts`` times; then the processor's dead letter for it (or nothing: a skip the
   processor counts) is committed with its offset, and the partition moves on.

The loop is transport-neutral: the Kafka runtime passes ``restore`` and ``commit``; unit
tests pass fakes.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from typing import Callable, Protocol

from streamrec.records import Output, ProcessResult, Record, TopicPartition

log = logging.getLogger(__name__)

# The dead-letter reason of a record whose processing raised.
PROCESSING_ERROR = "processing_error"


class PoisonableProcessor(Protocol):
    def process(self, batch: list[Record]) -> ProcessResult: ...

    def dead_letter(self, record: Record, reason: str, detail: str) -> Output | None: ...


@dataclass(frozen=True)
class PoisonPillPolicy:
    """How often one record may fail before it is dead-lettered, and how much error it carries.

    >>> PoisonPillPolicy(max_attempts=3).summary(KeyError("u1"))
    "KeyError: 'u1'"
    """

    # Failures of a record processed on its own before it is dead-lettered (the failure of
    # its whole batch is not counted: it does not say which record failed).
    max_attempts: int = 3
    # The error summary on the dead letter: exception type and first line, capped. Never
    # a traceback: its locals and message may carry other users' data.
    max_detail_chars: int = 200

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts!r}")
        if self.max_detail_chars < 16:
            raise ValueError(f"max_detail_chars must be at least 16, got {self.max_detail_chars!r}")

    def summary(self, error: BaseException) -> str:
        """``Type: first line of the message``, at most ``max_detail_chars`` characters."""
        lines = str(error).strip().splitlines()
        text = type(error).__name__ + (f": {lines[0]}" if lines else "")
        return text[:self.max_detail_chars]


@dataclass
class IsolationOutcome:
    """What re-processing one failed batch record by record did."""

    committed: int = 0  # records committed (applied or dead-lettered)
    dead_lettered: list[Record] = field(default_factory=list)
    failed_attempts: int = 0
    # Offset of the first record of each input partition left unprocessed (stopped early): the
    # runtime seeks there, so nothing is skipped.
    unprocessed: dict[TopicPartition, int] = field(default_factory=dict)


def process_in_isolation(batch: list[Record], processor: PoisonableProcessor,
                         policy: PoisonPillPolicy, *,
                         restore: Callable[[list[int]], None],
                         commit: Callable[[list[Record], ProcessResult], None],
                         stopping: Callable[[], bool] = lambda: False) -> IsolationOutcome:
    """Recover from ``process(batch)`` raising: restore, then one record per transaction.

    ``restore(partitions)`` must drop and rebuild the processor's state of those
    partitions from what is committed; ``commit(records, result)`` must make the outputs
    and the records' offsets durable atomically (or raise: a transport failure ends the
    session, which restarts from the committed state).
    """
    outcome = IsolationOutcome()
    # The failed call may have mutated any partition of the batch half-way.
    restore(sorted({record.partition for record in batch}))
    for index, record in enumerate(batch):
        if stopping():
            for rest in batch[index:]:
                outcome.unprocessed.setdefault(rest.topic_partition, rest.offset)
            break
        result = _process_one(record, processor, policy, restore, outcome)
        commit([record], result)
        outcome.committed += 1
    return outcome


def _process_one(record: Record, processor: PoisonableProcessor, policy: PoisonPillPolicy,
                 restore: Callable[[list[int]], None], outcome: IsolationOutcome) -> ProcessResult:
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return processor.process([record])
        except Exception as error:  # noqa: BLE001 - a processor is pure: this is the record
            outcome.failed_attempts += 1
            # Undo whatever the failed call applied to this partition before going on.
            restore([record.partition])
            if attempt == policy.max_attempts:
                outcome.dead_lettered.append(record)
                return _dead_letter(record, processor, policy, error)
    raise AssertionError("unreachable: max_attempts >= 1")  # pragma: no cover


def raised_at(error: BaseException) -> str:
    """Where ``error`` was raised: ``file:line in function`` of its innermost frame.

    Logged instead of the traceback or the message: it tells whoever fixes the bug where
    to look, while the record's bytes and a message that may quote data stay out of logs.
    """
    frames = traceback.extract_tb(error.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "?"


def _dead_letter(record: Record, processor: PoisonableProcessor, policy: PoisonPillPolicy,
                 error: Exception) -> ProcessResult:
    detail = policy.summary(error)
    log.error("record dead-lettered: its processing raised %d times", policy.max_attempts,
              extra={"topic": record.topic, "partition": record.partition,
                     "offset": record.offset, "error_type": type(error).__name__,
                     "raised_at": raised_at(error)})
    make = getattr(processor, "dead_letter", None)
    output = None
    if make is not None:
        try:
            output = make(record, PROCESSING_ERROR, detail)
        except Exception:  # noqa: BLE001 - a dead letter that cannot be built must not stop the partition
            log.exception("building the dead letter raised; the record is skipped",
                          extra={"topic": record.topic, "partition": record.partition,
                                 "offset": record.offset})
    # No dead-letter topic for this input (or processor): the offset still moves on; the
    # processor counted the skip in its dead_letter.
    return ProcessResult(outputs=[output] if output is not None else [], rejected=1)

"""The poison-pill policy on a fake processor and a fake broker: no Kafka, no clock."""

from __future__ import annotations

import copy
from collections import Counter

import pytest

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.score import ScoreProcessor
from streamrec.config import Settings
from streamrec.events import DLQ_DETAIL, DLQ_OFFSET, DLQ_REASON, headers_dict
from streamrec.transport.poison_pill import PROCESSING_ERROR, PoisonPillPolicy, process_in_isolation
from streamrec.records import Output, ProcessResult, Record, TopicPartition


class CountingProcessor:
    """Counts records per key and partition; ``b"poison"`` raises after mutating its state."""

    def __init__(self, flaky: dict[int, int] | None = None) -> None:
        self.state: dict[int, Counter[bytes]] = {}
        self.flaky = dict(flaky or {})  # offset -> failures left before it succeeds
        self.calls = 0

    def process(self, batch: list[Record]) -> ProcessResult:
        self.calls += 1
        outputs = []
        for record in batch:
            counts = self.state.setdefault(record.partition, Counter())
            counts[record.key] += 1  # applied before the check: a half-applied batch
            if record.value == b"poison":
                raise RuntimeError("cannot rank user 'u-secret'\n  data: 0xdeadbeef")
            if self.flaky.get(record.offset, 0) > 0:
                self.flaky[record.offset] -= 1
                raise TimeoutError("flaky")
            outputs.append(Output("state", record.key, str(counts[record.key]).encode(),
                                  partition=record.partition))
        return ProcessResult(outputs=outputs, processed=len(batch))

    def dead_letter(self, record: Record, reason: str, detail: str) -> Output | None:
        return Output("dlq", record.key, record.value,
                      headers=(("reason", reason.encode()), ("detail", detail.encode())))


class FakeBroker:
    """Durable state per partition (the changelog), committed offsets, produced outputs."""

    def __init__(self, processor: CountingProcessor) -> None:
        self.processor = processor
        self.durable: dict[int, Counter[bytes]] = {}
        self.offsets: dict[TopicPartition, int] = {}
        self.transactions: list[tuple[list[Record], list[Output]]] = []
        self.restores: list[list[int]] = []

    def restore(self, partitions: list[int]) -> None:
        self.restores.append(partitions)
        for p in partitions:
            self.processor.state[p] = copy.deepcopy(self.durable.get(p, Counter()))

    def commit(self, records: list[Record], result: ProcessResult) -> None:
        self.transactions.append((records, list(result.outputs)))
        for record in records:
            self.durable[record.partition] = copy.deepcopy(self.processor.state[record.partition])
            self.offsets[record.topic_partition] = record.offset + 1


def records(*specs: tuple[int, int, bytes, bytes]) -> list[Record]:
    return [Record("in", p, offset, key, value) for p, offset, key, value in specs]


BATCH = records((0, 0, b"a", b"ok"), (1, 0, b"b", b"ok"), (0, 1, b"a", b"poison"),
                (0, 2, b"a", b"ok"), (1, 1, b"b", b"ok"), (0, 3, b"c", b"ok"))


def run_failed_batch(processor: CountingProcessor, broker: FakeBroker,
                     policy: PoisonPillPolicy, batch: list[Record] = BATCH):
    """What the runtime does: the whole batch raises, then the policy takes over."""
    with pytest.raises(Exception):
        processor.process(batch)
    return process_in_isolation(batch, processor, policy, restore=broker.restore,
                                commit=broker.commit)


def test_a_poisoned_record_is_dead_lettered_and_every_other_record_applied_once():
    processor = CountingProcessor()
    broker = FakeBroker(processor)
    outcome = run_failed_batch(processor, broker, PoisonPillPolicy(max_attempts=3))

    # The half-applied batch was undone: every valid record counted exactly once.
    assert broker.durable == {0: Counter({b"a": 2, b"c": 1}), 1: Counter({b"b": 2})}
    assert outcome.dead_lettered == [BATCH[2]] and outcome.committed == len(BATCH)
    assert outcome.failed_attempts == 3
    # One transaction per record, in batch order; the dead letter is committed together
    # with the poisoned record's offset, so the partition moves on.
    assert [r for rs, _ in broker.transactions for r in rs] == BATCH
    poisoned_records, poisoned_outputs = broker.transactions[2]
    assert poisoned_records == [BATCH[2]]
    assert [(o.topic, o.value) for o in poisoned_outputs] == [("dlq", b"poison")]
    assert broker.offsets == {TopicPartition("in", 0): 4, TopicPartition("in", 1): 2}
    # Restored once for the batch, then after each failed attempt of the poisoned record.
    assert broker.restores == [[0, 1], [0], [0], [0]]


def test_the_dead_letter_carries_a_short_summary_never_the_rest_of_the_error():
    processor = CountingProcessor()
    broker = FakeBroker(processor)
    run_failed_batch(processor, broker, PoisonPillPolicy(max_attempts=1))
    (output,) = broker.transactions[2][1]
    headers = dict(output.headers)
    assert headers["reason"] == PROCESSING_ERROR.encode()
    assert headers["detail"] == b"RuntimeError: cannot rank user 'u-secret'"
    assert processor.calls == 1 + 5 + 1  # the batch, 5 good records, one poisoned attempt


def test_a_record_that_fails_fewer_times_than_max_attempts_is_applied_not_dead_lettered():
    # Offset 3 raises 3 times: once in its batch, then twice on its own, then succeeds.
    processor = CountingProcessor(flaky={3: 3})
    broker = FakeBroker(processor)
    batch = records((0, 2, b"a", b"ok"), (0, 3, b"c", b"ok"))
    outcome = run_failed_batch(processor, broker, PoisonPillPolicy(max_attempts=3), batch)
    assert outcome.dead_lettered == [] and outcome.failed_attempts == 2
    assert broker.durable == {0: Counter({b"a": 1, b"c": 1})}
    assert [o.topic for _, outputs in broker.transactions for o in outputs] == ["state", "state"]


def test_without_a_dead_letter_topic_the_record_is_skipped_and_the_offset_moves_on():
    class NoDeadLetters(CountingProcessor):
        def dead_letter(self, record, reason, detail):  # type: ignore[no-untyped-def]
            self.skipped = (record.offset, reason)
            return None

    processor = NoDeadLetters()
    broker = FakeBroker(processor)
    outcome = run_failed_batch(processor, broker, PoisonPillPolicy(max_attempts=2))
    assert processor.skipped == (1, PROCESSING_ERROR)
    assert broker.transactions[2] == ([BATCH[2]], [])
    assert outcome.committed == len(BATCH) and broker.offsets[TopicPartition("in", 0)] == 4


def test_a_dead_letter_that_cannot_be_built_still_lets_the_partition_move_on():
    class BrokenDeadLetters(CountingProcessor):
        def dead_letter(self, record, reason, detail):  # type: ignore[no-untyped-def]
            raise ValueError("header is not bytes")

    processor = BrokenDeadLetters()
    broker = FakeBroker(processor)
    outcome = run_failed_batch(processor, broker, PoisonPillPolicy(max_attempts=1))
    assert broker.transactions[2] == ([BATCH[2]], []) and outcome.committed == len(BATCH)


def test_stopping_half_way_reports_the_first_unprocessed_offset_of_each_partition():
    processor = CountingProcessor()
    broker = FakeBroker(processor)
    with pytest.raises(RuntimeError):
        processor.process(BATCH)
    outcome = process_in_isolation(BATCH, processor, PoisonPillPolicy(), restore=broker.restore,
                                   commit=broker.commit,
                                   stopping=lambda: len(broker.transactions) >= 2)
    assert outcome.committed == 2
    assert outcome.unprocessed == {TopicPartition("in", 0): 1, TopicPartition("in", 1): 1}


def test_a_transport_error_in_commit_is_not_swallowed():
    processor = CountingProcessor()

    def failing_commit(records, result):  # type: ignore[no-untyped-def]
        raise ConnectionError("broker gone")

    with pytest.raises(ConnectionError):
        process_in_isolation(BATCH[:1], processor, PoisonPillPolicy(),
                             restore=lambda partitions: None, commit=failing_commit)


def test_policy_validates_and_summarises():
    with pytest.raises(ValueError):
        PoisonPillPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        PoisonPillPolicy(max_detail_chars=3)
    policy = PoisonPillPolicy(max_detail_chars=20)
    assert policy.summary(RuntimeError()) == "RuntimeError"
    assert policy.summary(RecursionError("x" * 500)) == "RecursionError: xxxx"  # 20 characters
    assert policy.summary(ValueError("\n\nfirst\nsecond")) == "ValueError: first"


# -- the processors' dead letters -------------------------------------------------------------
SETTINGS = Settings()
T = SETTINGS.topics


def test_ingest_dead_letters_a_poisoned_click_to_the_dlq_and_counts_it():
    ingest = IngestProcessor(SETTINGS)
    record = Record(T.clicks, 2, 41, b"u1", b'{"event_id":"poison"}', headers=(("app", b"x"),))
    output = ingest.dead_letter(record, PROCESSING_ERROR, "RuntimeError: boom")
    assert output is not None and output.topic == T.dlq
    assert (output.key, output.value) == (record.key, record.value)
    headers = headers_dict(output.headers)
    assert headers[DLQ_REASON] == PROCESSING_ERROR and headers[DLQ_DETAIL] == "RuntimeError: boom"
    assert headers[DLQ_OFFSET] == "41" and headers["app"] == "x"
    assert ingest.rejected_by_reason[PROCESSING_ERROR] == 1


def test_score_dead_letters_a_request_and_skips_and_counts_a_state():
    scorer = ScoreProcessor(SETTINGS)
    request = Record(T.requests, 0, 7, b"u1", b'{"request_id":"r","user_id":"u1"}')
    output = scorer.dead_letter(request, PROCESSING_ERROR, "KeyError: 'u1'")
    assert output is not None and output.topic == T.dlq
    assert headers_dict(output.headers)[DLQ_REASON] == PROCESSING_ERROR
    state = Record(T.user_state, 0, 9, b"u1", b"\x00")
    assert scorer.dead_letter(state, PROCESSING_ERROR, "ValueError: x") is None
    assert scorer.dead_letter(state, PROCESSING_ERROR, "ValueError: x") is None
    assert scorer.skipped_by_reason == Counter({(T.user_state, PROCESSING_ERROR): 2})  # type: ignore[attr-defined]

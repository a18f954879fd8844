"""A scorer's input as ingest writes it, and what a scorer publishes from it in given batches.

Shared by the batch-invariance tests (import: ``unit.consumers.score_helpers``).
"""

from __future__ import annotations

import random
from typing import Callable

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.score import ScoreProcessor, encode_request
from streamrec.producers.synthetic import SyntheticStream
from streamrec.transport.bus import InProcessBus
from streamrec.transport.bus_runner import InProcessRunner
from streamrec.config import Settings
from streamrec.events import encode_click
from streamrec.records import Output, Record


def scorer_input(settings: Settings, n_events: int = 1_200, n_items: int = 60,
                 requests_every: int = 25) -> list[Record]:
    """``user-state`` (states, model snapshots) and ``requests`` records, in one stream order.

    Ingest runs on the bus as in production; its partitions are interleaved record by
    record (the order a scorer reading several partitions may meet them in), with a request
    for a recent user every ``requests_every`` records, some of them excluding items.
    """
    topics = settings.topics
    bus = InProcessBus(settings.partitions)
    ingest = InProcessRunner(bus, IngestProcessor(settings), [topics.clicks], batch_size=40)
    for event in SyntheticStream(n_users=40, n_items=n_items, n_events=n_events,
                                 seed=3).events():
        bus.produce(Output(topics.clicks, event.user_id.encode(), encode_click(event)))
    ingest.drain()
    logs = bus.topic(topics.user_state)
    merged: list[Record] = []
    for depth in range(max(len(log) for log in logs)):
        merged.extend(log[depth] for log in logs if depth < len(log))
    assert any(r.key is not None and r.key.startswith(b"__") for r in merged), "no snapshot"
    stream: list[Record] = []
    requests = 0
    for record in merged:
        stream.append(record)
        if record.key is not None and not record.key.startswith(b"__") and \
                len(stream) % requests_every == 0:
            user = record.key.decode()
            exclude = [f"i{requests % n_items}"] if requests % 2 else None
            stream.append(Record(topics.requests, record.partition, requests, record.key,
                                 encode_request(f"r{requests}", user, k=5 + requests % 3,
                                                exclude_items=exclude)))
            requests += 1
    return stream


def published(scorer: ScoreProcessor, records: list[Record], cuts: list[int]
              ) -> list[tuple[str, bytes | None, bytes | None]]:
    """Every output of ``scorer`` fed ``records`` in the batches ``cuts`` delimit.

    The scorer's clock should be constant: then the whole message, latencies included, is
    a function of the input alone and can be compared byte for byte.
    """
    outputs = []
    for start, stop in zip([0, *cuts], [*cuts, len(records)]):
        if start < stop:
            outputs.extend((o.topic, o.key, o.value) for o in scorer.process(records[start:stop])
                           .outputs)
    return outputs


def batchings(n: int, seeds: range = range(3)) -> dict[str, list[int]]:
    """Cut points: one batch, batches of 1, and random splits (seeded)."""
    cuts = {"one batch": [], "batches of 1": list(range(1, n))}
    for seed in seeds:
        rng = random.Random(seed)
        cuts[f"random split {seed}"] = sorted(rng.sample(range(1, n), rng.randint(2, n // 8)))
    return cuts


Output3 = tuple[str, "bytes | None", "bytes | None"]


def assert_batch_invariant(factory: Callable[[], ScoreProcessor], records: list[Record],
                           same: Callable[[Output3, Output3], bool] | None = None
                           ) -> list[Output3]:
    """Each batching publishes exactly what one batch does (byte for byte, unless ``same``
    says how two outputs compare); returns the one-batch output.

    The scorer's own state topic is a changelog written once per key per batch, so its
    records follow the batching by design: what must not is the state they leave, compared
    as compaction keeps it (the last value per partition and key)."""
    results, states = {}, {}
    for name, cuts in batchings(len(records)).items():
        scorer = factory()
        outputs: list[Output3] = []
        state: dict[tuple[int | None, bytes | None], bytes | None] = {}
        for start, stop in zip([0, *cuts], [*cuts, len(records)]):
            for o in (scorer.process(records[start:stop]).outputs if start < stop else []):
                if o.topic == scorer.state_topic:
                    state[(o.partition, o.key)] = o.value
                else:
                    outputs.append((o.topic, o.key, o.value))
        results[name], states[name] = outputs, state
    reference = results["one batch"]
    for name, outputs in results.items():
        assert len(outputs) == len(reference), name
        for n, (got, expected) in enumerate(zip(outputs, reference)):
            assert (got == expected if same is None else same(got, expected)), \
                f"{name}: output {n} differs"
        assert states[name] == states["one batch"], f"{name}: the scorer's state differs"
    return reference


def walk_states(settings: Settings, walks: list[tuple[str, str]]) -> list[Record]:
    """The ``user-state`` records ingest writes for (user, item) clicks, one a second."""
    from streamrec.events import ClickEvent

    topics = settings.topics
    ingest = IngestProcessor(settings)
    clicks = [Record(topics.clicks, 0, n, user.encode(), encode_click(ClickEvent(
        event_id=f"e{n}", user_id=user, item_id=item, type="click", ts=float(n))))
        for n, (user, item) in enumerate(walks)]
    outputs = [o for o in ingest.process(clicks).outputs if o.value is not None]
    return [Record(topics.user_state, 0, n, o.key, o.value) for n, o in enumerate(outputs)]

"""A step with nothing to read (the one that ends every ``drain``) takes the fast path of
``InProcessRunner._idle`` and leaves the runner exactly as the full step would."""

from __future__ import annotations

import random

import pytest

from streamrec.records import Output
from streamrec.transport.bus import InProcessBus
from streamrec.transport.bus_runner import InProcessRunner
from test_bus_global_reads import PARTITIONS, TOPIC, GlobalLearner


def runner_state(runner: InProcessRunner) -> tuple:
    merge = runner.merge
    return (runner._next_partition, runner._next_global, dict(runner.positions),
            dict(runner.global_positions), dict(runner._read), dict(runner._global_read),
            runner.batches_committed, None if merge is None else (
                sorted(merge._buffers), dict(merge._waiting_since), set(merge._passed_over)))


def replay(seed: int, fast: bool) -> tuple[list, list, tuple]:
    rng = random.Random(seed)
    bus = InProcessBus(PARTITIONS)
    learners = (GlobalLearner(), GlobalLearner())
    runners = [InProcessRunner(bus, learners[0], [TOPIC], batch_size=3, partitions=[0, 1]),
               InProcessRunner(bus, learners[1], [TOPIC], batch_size=3, partitions=[2, 3])]
    idle_steps = 0
    for runner in runners:
        full = runner._idle
        if not fast:
            runner._idle = lambda: False  # type: ignore[method-assign]
        else:
            def counted(full=full):
                nonlocal idle_steps
                idle = full()
                idle_steps += idle
                return idle
            runner._idle = counted  # type: ignore[method-assign]
    ts = 0.0
    for _ in range(60):
        for _ in range(rng.randrange(0, 4)):
            ts += rng.random()
            bus.produce(Output(TOPIC, f"u{rng.randrange(9)}".encode(), str(ts).encode()))
        for runner in runners:
            if rng.random() < 0.5:
                runner.drain()
            else:
                runner.step()
    if fast:
        assert idle_steps > 20  # the fast path was taken, often
    return ([(l.processed, l.learned_globally, l.handed) for l in learners],
            [runner_state(r) for r in runners], ())


@pytest.mark.parametrize("seed", range(3))
def test_an_idle_step_changes_what_a_full_step_changes(seed: int) -> None:
    assert replay(seed, fast=True) == replay(seed, fast=False)


def test_a_step_with_records_to_read_is_not_idle() -> None:
    bus = InProcessBus(PARTITIONS)
    runner = InProcessRunner(bus, GlobalLearner(), [TOPIC], partitions=[0, 1])
    assert runner._idle()
    bus.produce(Output(TOPIC, None, b"1.0", partition=3))  # another member's partition
    assert not runner._idle()
    runner.drain()
    assert runner._idle()

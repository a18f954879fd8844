"""Prequential replay with the systems spread over worker processes.

Systems never share state: each one sees the identical event sequence and the evaluator's
seen-sets and catalogue depend only on the log. So replaying each system alone, in its own
process, gives exactly the outcomes of the serial pass (pinned by
``tests/unit/evaluation/test_replay_outcomes_pinned.py``); only wall time changes. Every
worker rebuilds its system from the registry by name, with the same options and seed, so
nothing but the log goes to a worker and nothing but accumulators come back.

Workers are spawned, not forked: a forked child of a process that has touched torch or
onnxruntime thread pools can deadlock, and spawning makes each worker's start independent
of what the parent happened to import. The results travel through ``multiprocessing``
(pickle) between this process and its own children only; nothing read from a topic or the
model store crosses that pipe.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

from streamrec.app.evaluation.prequential import EvaluationResult, PrequentialEvaluator
from streamrec.app.evaluation.systems import SystemOptions, build_systems
from streamrec.events import ClickEvent
from streamrec.ranking_metrics import MetricsAccumulator

# Relative cost of a system in replay, to start the longest first (longest processing time
# first keeps two workers busy to the end). Measured on a 10k-event ML-100K prefix; the
# exact values matter only for their order.
COST_HINT: dict[str, float] = {
    "streamrec-full": 100.0, "deep": 60.0, "streamrec": 40.0, "online-blend": 20.0,
    "online-fm": 15.0, "online-embedding": 10.0, "river-mf": 8.0, "item-knn": 6.0,
    "markov": 4.0, "most-popular": 3.0, "recent-popular": 3.0,
}
# How often a worker reports progress (events); the parent only redraws a line.
PROGRESS_EVERY = 1_000

# A worker's answer: name, accumulators (whole log, held-out), why unavailable, its cost.
_Outcome = tuple[str, MetricsAccumulator | None, MetricsAccumulator | None, str | None,
                 dict[str, float]]

_worker_events: list[ClickEvent] = []
_worker_progress: Any = None


def _init_worker(events: list[ClickEvent], progress: Any) -> None:
    global _worker_events, _worker_progress
    from streamrec.app.gc_policy import apply_gc_policy

    apply_gc_policy()  # a spawned worker starts with the defaults
    _worker_events, _worker_progress = events, progress


def _count_progress(n: int) -> None:
    # Called once per event: only every PROGRESS_EVERY-th touches the shared counter.
    _count_progress.pending += n  # type: ignore[attr-defined]
    if _count_progress.pending >= PROGRESS_EVERY:  # type: ignore[attr-defined]
        with _worker_progress.get_lock():
            _worker_progress.value += _count_progress.pending  # type: ignore[attr-defined]
        _count_progress.pending = 0  # type: ignore[attr-defined]


_count_progress.pending = 0  # type: ignore[attr-defined]


def _replay_one(name: str, options: SystemOptions, ks: tuple[int, ...], window: int,
                held_out_from: int | None) -> _Outcome:
    """In a worker: build ``name`` and replay the whole log through it alone."""
    wall, cpu = time.perf_counter(), time.process_time()
    built, unavailable = build_systems([name], options)
    if name not in built:
        return name, None, None, unavailable.get(name, "unavailable"), {}
    on_event = _count_progress if _worker_progress is not None else None
    result = PrequentialEvaluator(built, ks, window).run(_worker_events, on_event,
                                                         held_out_from=held_out_from)
    held = None if result.held_out is None else result.held_out[name]
    # What the system cost its worker: on a shared machine CPU seconds are the steadier
    # figure, wall seconds the one that adds up to the replay's wall time.
    cost = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    return name, result.metrics[name], held, None, cost


def run_parallel(names: Sequence[str], options: SystemOptions, events: list[ClickEvent],
                 ks: Sequence[int], window: int, jobs: int,
                 on_progress: Callable[[int], None] | None = None,
                 held_out_from: int | None = None) -> tuple[EvaluationResult, dict[str, str]]:
    """Replay ``events`` through each named system in up to ``jobs`` worker processes.

    Returns the result (systems in the order given) and the systems that a worker could not
    build, with the reason. ``on_progress(n)`` is called in this process with system-events
    done since the last call (the total is ``len(events) * len(names)``).
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    ordered = list(dict.fromkeys(names))
    if not ordered:
        raise ValueError("at least one system is needed")
    ks = tuple(sorted(set(ks)))
    context = multiprocessing.get_context("spawn")
    progress = context.Value("q", 0) if on_progress is not None else None
    start = time.perf_counter()
    outcomes: dict[str, tuple[MetricsAccumulator | None, MetricsAccumulator | None,
                              str | None]] = {}
    costs: dict[str, dict[str, float]] = {}
    with ProcessPoolExecutor(max_workers=min(jobs, len(ordered)), mp_context=context,
                             initializer=_init_worker, initargs=(events, progress)) as pool:
        longest_first = sorted(ordered, key=lambda name: -COST_HINT.get(name, 1.0))
        pending: set[Future[Any]] = {
            pool.submit(_replay_one, name, options, ks, window, held_out_from)
            for name in longest_first}
        reported = 0
        while pending:
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                name, system_result, held, reason, cost = future.result()
                outcomes[name] = (system_result, held, reason)
                costs[name] = cost
            if progress is not None and on_progress is not None:
                now = int(progress.value)
                on_progress(now - reported)
                reported = now
    unavailable = {name: reason for name, (_, _, reason) in outcomes.items() if reason}
    metrics: dict[str, MetricsAccumulator] = {}
    held_out: dict[str, MetricsAccumulator] | None = None if held_out_from is None else {}
    for name in ordered:
        system_metrics, system_held, _ = outcomes[name]
        if system_metrics is not None:
            metrics[name] = system_metrics
        if held_out is not None and system_held is not None:
            held_out[name] = system_held
    result = EvaluationResult("prequential", ks, window, metrics, len(events),
                              time.perf_counter() - start,
                              extra={"parallel_jobs": min(jobs, len(ordered)),
                                     "system_seconds": {name: costs[name] for name in ordered
                                                        if costs.get(name)}},
                              held_out=held_out, held_out_from=held_out_from)
    return result, unavailable

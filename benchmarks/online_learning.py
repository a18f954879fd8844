"""Learning throughput of the online learners: ``learn_one`` per event vs ``learn_many`` chunks.

The ingest consumer keeps one ``OnlineBlend`` per partition and learns in fixed-size
micro-batches (``--chunk`` events, 128 by default), so the result depends only on the event
sequence. Ingest must reach 7,500 events/s end to end, which leaves about 40 µs per event
for learning: ``OnlineBlend.learn_many`` must run at 30,000 events/s or more.

For the user embeddings, the FM recommender and the blend, on MovieLens 100K in event-time
order, each from a fresh model with the same seed, this times learning every event once
with ``learn_one`` and once with ``learn_many`` on consecutive chunks, and prints the
ratio. The machine's load average is recorded next to the numbers (others may be using it).
It also records the pickled size of the blend after learning everything (the blend is
snapshotted to Kafka).

``--quality`` also replays the stream prequentially (recommend, then learn) through the
blend learning per event and through ``ChunkedBlend`` learning every ``--chunk`` events,
and prints both NDCG@10 (the prequential evaluator of ``streamrec replay``).

    .venv/bin/python benchmarks/online_learning.py [--chunk 128] [--repeats 3] [--quality]
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Callable, Collection, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_results import save_results  # noqa: E402

from streamrec.online_models.base import Ranking  # noqa: E402
from streamrec.online_models.blend import FMRecommender, OnlineBlend  # noqa: E402
from streamrec.online_models.embeddings import OnlineUserEmbeddings  # noqa: E402
from streamrec.producers.logs import read_log  # noqa: E402
from streamrec.events import ClickEvent  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k" / "u.data"
TARGET_EVENTS_PER_S = 30_000.0  # OnlineBlend.learn_many: ~40 µs/event of the ingest budget

LEARNERS: dict[str, Callable[[], object]] = {
    "embeddings": lambda: OnlineUserEmbeddings(seed=0),
    "fm": lambda: FMRecommender(seed=1),
    "blend": lambda: OnlineBlend(seed=0),
}


class ChunkedBlend:
    """An ``OnlineBlend`` driven like the ingest consumer: learns every ``chunk`` events.

    ``learn_one`` only buffers; the buffered events are learned with one ``learn_many``
    once ``chunk`` of them are in. ``recommend`` ranks with the model as learned so far,
    which is what a scorer holding the partition's latest blend would see.
    """

    def __init__(self, blend: OnlineBlend, chunk: int = 128) -> None:
        self.blend, self.chunk = blend, chunk
        self._buffer: list[ClickEvent] = []

    def learn_one(self, event: ClickEvent) -> None:
        self._buffer.append(event)
        if len(self._buffer) >= self.chunk:
            self.blend.learn_many(self._buffer)
            self._buffer = []

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        return self.blend.recommend(user_id, k, exclude)


def time_learning(factory: Callable[[], object], events: Sequence[ClickEvent],
                  chunk: int | None) -> tuple[float, object]:
    """Seconds to learn ``events`` into a fresh model (``chunk=None``: ``learn_one``)."""
    model = factory()
    start = time.perf_counter()
    if chunk is None:
        learn = model.learn_one  # type: ignore[attr-defined]
        for event in events:
            learn(event)
    else:
        learn_many = model.learn_many  # type: ignore[attr-defined]
        for lo in range(0, len(events), chunk):
            learn_many(events[lo:lo + chunk])
    return time.perf_counter() - start, model


def quality(events: Sequence[ClickEvent], chunk: int) -> dict[str, float]:
    """Prequential NDCG@10 / HR@10 of the blend learning per event and per chunk."""
    from streamrec.config import Settings
    from streamrec.app.evaluation.prequential import PrequentialEvaluator

    half_life_s = Settings().popularity_half_life_s  # as ``streamrec replay`` builds it
    systems = {"online-blend": OnlineBlend(half_life_s=half_life_s, seed=0),
               f"online-blend-chunked-{chunk}": ChunkedBlend(
                   OnlineBlend(half_life_s=half_life_s, seed=0), chunk)}
    summary = PrequentialEvaluator(systems, (10,)).run(events).summary()
    return {f"{name} {key}": float(metrics["overall"][key])
            for name, metrics in summary.items() for key in ("ndcg@10", "hr@10")}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="MovieLens u.data")
    parser.add_argument("--chunk", type=int, default=128, help="events per learn_many call")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed learn_many runs; the fastest counts (load from others)")
    parser.add_argument("--limit", type=int, default=None, help="learn only the first N events")
    parser.add_argument("--quality", action="store_true",
                        help="also replay prequentially: per-event vs chunked NDCG@10")
    args = parser.parse_args(argv)
    events = read_log(args.data, "movielens")[: args.limit]
    load_before = os.getloadavg()
    rates: dict[str, dict[str, float]] = {}
    for name, factory in LEARNERS.items():
        one = time_learning(factory, events, None)[0]  # the slow reference: timed once
        many = min(time_learning(factory, events, args.chunk)[0] for _ in range(args.repeats))
        rates[name] = {"learn_one_events_per_s": len(events) / one,
                       "learn_many_events_per_s": len(events) / many,
                       "us_per_event_learn_many": 1e6 * many / len(events),
                       "ratio_many_over_one": one / many}
        print(f"{name:<11} learn_one {len(events) / one:>9,.0f} ev/s   "
              f"learn_many({args.chunk}) {len(events) / many:>9,.0f} ev/s   "
              f"({1e6 * many / len(events):5.1f} µs/event)   ×{one / many:5.1f}", flush=True)
    _, blend = time_learning(LEARNERS["blend"], events, args.chunk)
    pickled = len(pickle.dumps(blend))
    load_after = os.getloadavg()
    blend_rate = rates["blend"]["learn_many_events_per_s"]
    print(f"blend learn_many target {TARGET_EVENTS_PER_S:,.0f} ev/s: "
          f"{'met' if blend_rate >= TARGET_EVENTS_PER_S else 'MISSED'}")
    print(f"blend pickle after {len(events):,} events: {pickled / 1e6:.2f} MB")
    print(f"load average (1, 5, 15 min) before {load_before} after {load_after} "
          f"on {os.cpu_count()} cpus")
    payload: dict = {"events": len(events), "chunk": args.chunk, "repeats": args.repeats,
                     "rates": rates, "target_events_per_s": TARGET_EVENTS_PER_S,
                     "blend_pickle_bytes": pickled,
                     "load_average": {"before": load_before, "after": load_after}}
    if args.quality:
        payload["quality"] = quality(events, args.chunk)
        for key, value in payload["quality"].items():
            print(f"{key:<40} {value:.4f}")
    save_results("online_learning", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""ItemSideTable's learning and the scorer's per-trigger item-side rankings, now / before.

ML-100K's first ``--events`` clicks (time order) run through ``IngestProcessor`` one click per
poll (a state per click, as ``benchmarks/scorer.py`` does), and the ``user-state`` records it
writes are decoded once. The same sequence of (partition, offset, state) then goes, in the
same process, through (both advanced 100 states at a time in turn, so that both see the
same background load; ``--reps`` passes, the best of each phase taken):

- ``ItemSideTable`` (online_models/item_side.py), the table as it is now;
- the frozen copy of before (benchmarks/item_side_reference.py, main ``f1410ff``);

each doing per state what the scorer does per trigger: ``apply`` the state, then the
item-side lists of the trigger (``rows_of`` the user's seen items, co-visitation and
transition rankings of the state's recent items at the fusion depth, and the popularity
list, which the scorer asks for only before a snapshot, timed apart). Every phase is timed
on its own (``perf_counter``, the cost of reading the clock subtracted); both tables'
rankings (every trigger) and final counts are asserted identical, bit for bit, in the same
run. ``item_side_per_trigger``: apply,
``rows_of``, co-visitation and transitions over the triggers (what every trigger costs). A synthetic ``--big-items`` catalogue (0: skip) shows how the rankings grow
with the catalogue (whole-catalogue arrays before, the rows' items only now).

    taskset -c 1 .venv/bin/python benchmarks/item_side.py [--events 20000] [--big-items 100000]

Times are of the table calls only, on a shared machine: compare the ratios of one run, not
absolute figures across runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scorer import DATA, ingest_states  # noqa: E402
from scoring import save  # noqa: E402

PHASES = ("apply", "rows_of", "context", "transitions", "popularity")


def _clock_read_s(reads: int = 100_000) -> float:
    """What one ``t1 - t0`` of back-to-back ``perf_counter`` reads costs (the least of 5)."""
    clock, best = time.perf_counter, float("inf")
    for _ in range(5):
        started = clock()
        for _ in range(reads):
            clock()
        best = min(best, (clock() - started) / reads)
    return best


CLOCK_READ_S = _clock_read_s()


def decoded_states(settings: object, records: list) -> list[tuple[int, int, object]]:
    """(partition, offset, state) of every user-state record the scorer would learn."""
    from streamrec.consumers.partition_models import is_snapshot_key
    from streamrec.consumers.score import ScoreProcessor
    from streamrec.input_bounds import BadInput

    decoder = ScoreProcessor(settings)  # type: ignore[arg-type]
    out = []
    for record in records:
        if record.key is None or is_snapshot_key(record.key):
            continue
        try:
            _, state = decoder._decode_state(record)
        except BadInput:
            continue
        if state is not None:
            out.append((record.partition, record.offset, state))
    return out


def run_lockstep(makes: dict[str, Callable[[], object]], states: list, depth: int,
                 chunk: int = 100) -> tuple[dict[str, dict[str, float]], int]:
    """Seconds per phase of each table over ``states``, the tables advanced chunk by chunk
    in turn (the first of each chunk alternating), so that both see the same background
    load; every trigger's lists are asserted identical as they come. Returns the seconds
    and the number of triggers."""
    tables = {name: make() for name, make in makes.items()}
    seconds = {name: dict.fromkeys(PHASES, 0.0) for name in tables}
    names, triggers = list(tables), 0
    for start in range(0, len(states), chunk):
        block = states[start:start + chunk]
        lists = {}
        for name in (names if (start // chunk) % 2 == 0 else names[::-1]):
            lists[name] = run_block(tables[name], block, depth, seconds[name])
        first, *others = lists.values()
        for other in others:
            mismatched = sum(a != b for a, b in zip(first, other))
            assert len(first) == len(other) and not mismatched, (
                f"{mismatched} triggers ranked differently by the tables")
        triggers += len(first)
    learned = [counts_of(table) for table in tables.values()]
    assert all(counts == learned[0] for counts in learned), "the tables learned different counts"
    return seconds, triggers


def run_block(table: object, states: list, depth: int, seconds: dict[str, float]) -> list:
    """What the scorer asks of the table for each state (timed into ``seconds``), and every
    trigger's lists as plain lists."""
    clock = time.perf_counter
    lists: list = []
    apply = table.apply  # type: ignore[attr-defined]
    rows_of = table.rows_of  # type: ignore[attr-defined]
    context = table.recommend_context_rows  # type: ignore[attr-defined]
    transitions = table.recommend_transitions_rows  # type: ignore[attr-defined]
    popularity = table.recommend_explained_rows  # type: ignore[attr-defined]
    for partition, offset, state in states:
        t0 = clock()
        apply(partition, offset, state)
        t1 = clock()
        seconds["apply"] += t1 - t0
        if not state.recent_items:
            continue
        excluded = set(state.seen_items)
        t1 = clock()
        exclude_rows = rows_of(excluded)
        t2 = clock()
        covisited = context(state.recent_items, depth, excluded, exclude_rows)
        t3 = clock()
        following = transitions(state.recent_items, depth, excluded, exclude_rows)
        t4 = clock()
        popular = popularity(depth, excluded, exclude_rows)
        t5 = clock()
        seconds["rows_of"] += t2 - t1
        seconds["context"] += t3 - t2
        seconds["transitions"] += t4 - t3
        seconds["popularity"] += t5 - t4
        lists.append((sorted(exclude_rows.tolist()),
                      *(array.tolist() for array in (*covisited, *following, *popular))))
    return lists


def counts_of(table: object) -> tuple:
    """Everything learned that a ranking can see, exactly."""
    return (table.item_counts(), table.pair_counts(),  # type: ignore[attr-defined]
            *(table.transition_counts(gap)  # type: ignore[attr-defined]
              for gap in range(1, table.transition_order + 1)),  # type: ignore[attr-defined]
            table.decayed_weights(), table.reference_ts)  # type: ignore[attr-defined]


def scenario(settings: object, states: list, reps: int) -> dict:
    from streamrec.online_models.item_side import ItemSideTable
    from item_side_reference import ItemSideTable as ReferenceItemSideTable

    def table(cls: type) -> Callable[[], object]:
        # As consumers/score.py builds its table.
        return lambda: cls(window=settings.covisit_window,  # type: ignore[attr-defined]
                           recent=settings.covisit_recent,  # type: ignore[attr-defined]
                           half_life_s=settings.popularity_half_life_s,  # type: ignore[attr-defined]
                           transition_order=settings.transition_order)  # type: ignore[attr-defined]

    depth = settings.fusion_depth  # type: ignore[attr-defined]
    variants = {"now": table(ItemSideTable), "before": table(ReferenceItemSideTable)}
    best: dict[str, dict[str, float]] = {}
    triggers = 0
    for _ in range(reps):
        seconds, triggers = run_lockstep(variants, states, depth)
        for name, phases in seconds.items():
            kept = best.setdefault(name, dict(phases))
            for phase in PHASES:
                kept[phase] = min(kept[phase], phases[phase])
    out: dict = {"states": len(states), "triggers": triggers, "identical_triggers": triggers,
                 "clock_read_us": round(CLOCK_READ_S * 1e6, 3)}
    for name in variants:
        # apply per state (every state is learned), the rankings per trigger
        out[name] = {phase: round((best[name][phase] / (len(states) if phase == "apply"
                                                        else triggers) - CLOCK_READ_S) * 1e6, 2)
                     for phase in PHASES}
        out[name]["item_side_per_trigger"] = round(
            (sum(best[name][p] for p in PHASES if p != "popularity") / triggers
             - 4 * CLOCK_READ_S) * 1e6, 2)
    out["speedup"] = {key: round(out["before"][key] / max(out["now"][key], 1e-9), 2)
                      for key in (*PHASES, "item_side_per_trigger")}
    return out


def main() -> None:
    from streamrec.config import Settings
    from streamrec.producers.logs import read_log
    from streamrec.producers.synthetic import SyntheticStream

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--big-items", type=int, default=100_000,
                        help="synthetic catalogue size (0: skip)")
    parser.add_argument("--big-events", type=int, default=5_000)
    parser.add_argument("--name", default="item_side", help="results/<name>.json")
    args = parser.parse_args()
    started = time.perf_counter()
    settings = Settings()
    events = read_log(args.data, "movielens")[: args.events]
    states = decoded_states(settings, ingest_states(settings, events, 1))
    out: dict = {"config": {k: str(v) for k, v in vars(args).items()},
                 "ml100k": scenario(settings, states, args.reps)}
    out["ml100k"]["catalogue_items"] = len({e.item_id for e in events})
    _print(f"ML-100K ({len(events):,} events)", out["ml100k"])
    if args.big_items:
        synthetic = list(SyntheticStream(n_users=2_000, n_items=args.big_items,
                                         n_events=args.big_events, seed=5).events())
        big_states = decoded_states(settings, ingest_states(settings, synthetic, 1))
        out["synthetic_big"] = scenario(settings, big_states, args.reps)
        out["synthetic_big"]["catalogue_items"] = args.big_items
        _print(f"synthetic catalogue of {args.big_items:,} items ({len(synthetic):,} events)",
               out["synthetic_big"])
    out["seconds"] = round(time.perf_counter() - started, 1)
    # the machine is shared: a load above the cores in use means the figures are inflated
    out["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    save(args.name, out)


def _print(title: str, result: dict) -> None:
    print(f"{title}: {result['states']:,} states, {result['triggers']:,} triggers, "
          f"all {result['identical_triggers']:,} ranked identically by both tables")
    print(f"  {'µs per trigger':<24}{'now':>10}{'before':>10}{'speed-up':>10}")
    for key in (*PHASES, "item_side_per_trigger"):
        print(f"  {key:<24}{result['now'][key]:>10.2f}{result['before'][key]:>10.2f}"
              f"{result['speedup'][key]:>9.2f}x")


if __name__ == "__main__":
    main()

"""``streamrec tune PATH --format ... --until 0.5``: choose the fusion settings on a prefix.

Prints each trial as it finishes, then writes the chosen values as JSON and as
``STREAMREC_*`` lines (an env file) so a replay or a deployment can use them verbatim.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from streamrec.app.evaluation.cli import FORMATS, _tune_until
from streamrec.config import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tune", help="choose fusion settings by replaying only a log's prefix",
        description="Coordinate descent over the fusion weights (online, deep, co-visitation, "
                    "transitions), the co-visitation context and the fusion depth, each "
                    "candidate scored by replaying the prefix only.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--format", dest="fmt", choices=FORMATS, required=True)
    parser.add_argument("--until", type=_tune_until, required=True,
                        metavar="FRACTION|TIMESTAMP", help="the end of the tuning prefix")
    parser.add_argument("--system", default="streamrec")
    parser.add_argument("--only", type=_setting_names, metavar="NAME[,NAME...]",
                        help="tune only these settings of the grid; the others keep their "
                             "values (defaults or STREAMREC_* variables), e.g. deep_weight "
                             "on streamrec-full once the online ones are chosen")
    parser.add_argument("--min-gain", type=_min_gain, default=None, metavar="FRACTION",
                        help="relative NDCG gain a value needs over the one held to replace "
                             "it (default 0.005)")
    parser.add_argument("--out", type=Path, default=Path("tuned"),
                        help="folder for tuned.json and tuned.env (default tuned/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run_tune)


def _min_gain(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in [0, 1)")
    return value


def _setting_names(text: str) -> tuple[str, ...]:
    from streamrec.app.argtypes import known_names
    from streamrec.app.evaluation.tuning import DEFAULT_GRID

    return tuple(known_names(text, DEFAULT_GRID, "setting"))


def run_tune(args: argparse.Namespace) -> int:
    from streamrec.app.evaluation.split import split_index
    from streamrec.app.evaluation.tuning import (DEFAULT_MIN_GAIN, coordinate_descent, grid_for,
                                                 replay_scorer)
    from streamrec.producers.logs import LogFormatError, read_log

    try:
        events = read_log(args.path, args.fmt)
        split = split_index(events, args.until)
    except (LogFormatError, UnicodeDecodeError, ValueError) as exc:
        sys.stderr.write(f"streamrec: error: {exc}\n")
        return 2
    start = time.perf_counter()

    def report(trial: dict[str, object]) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {trial['settings']} "
              f"ndcg@10 {trial['score']:.4f}", flush=True)

    settings = Settings.from_env()
    grid = grid_for(args.system, settings)
    if args.only:
        missing = [name for name in args.only if name not in grid]
        if missing:
            sys.stderr.write(f"streamrec: error: --only {','.join(missing)}: system "
                             f"{args.system!r} does not read it\n")
            return 2
        grid = {name: grid[name] for name in args.only}
    print(f"tuning {args.system} on events [0, {split:,}) of {len(events):,}: "
          f"{', '.join(grid)}", flush=True)
    min_gain = DEFAULT_MIN_GAIN if args.min_gain is None else args.min_gain
    result = coordinate_descent(events, split, settings,
                                replay_scorer(args.system, seed=args.seed), grid=grid,
                                min_gain=min_gain, on_trial=report)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"path": str(args.path), "until": args.until.describe(), "split": split,
              "system": args.system, "min_gain": min_gain, "chosen": result.chosen,
              "score_on_prefix": result.score,
              "trials": result.trials, "wall_time_s": time.perf_counter() - start}
    (args.out / "tuned.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / "tuned.env").write_text("\n".join(result.as_env()) + "\n")
    print("chosen: " + " ".join(result.as_env()))
    return 0

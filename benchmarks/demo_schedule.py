"""The demo's live HR@10 / oracle by stream length and training schedule, reproducibly.

Runs ``streamrec demo --wait-for-trainer``'s code (``run_demo(background=False)``: the stream
waits for each training run, so a figure is the same on every run of one seed) for each
seed x variant asked, prints one line each and saves JSON in ``benchmarks/results/``.
The ratio to the oracle is the reference measured in the same pass (the generator's true
top-10, sampled beside the live recommendations). Choose on seeds 1-3; quote seed 7.

    .venv/bin/python benchmarks/demo_schedule.py --seeds 1 2 3 --variants now fifths150k
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_results import save_results  # noqa: E402

from streamrec.app.demo import demo_trainer_config, run_demo  # noqa: E402
from streamrec.config import Settings  # noqa: E402

# name -> (events, training points as fractions of the stream, epochs of a cold run)
VARIANTS: dict[str, tuple[int, tuple[float, ...], int]] = {
    "now": (100_000, (0.2, 0.6), 6),                  # the demo before this comparison
    "every5th_100k": (100_000, (0.2, 0.4, 0.6, 0.8), 6),
    "fifths150k": (150_000, (0.2, 0.6), 6),
    "every5th_150k": (150_000, (0.2, 0.4, 0.6, 0.8), 6),
    "every10th_150k": (150_000, tuple(i / 10 for i in range(1, 10)), 6),
    "early_every5th_150k": (150_000, (0.1, 0.3, 0.5, 0.7, 0.9), 6),
}


def run_variant(seed: int, name: str) -> dict:
    events, fractions, epochs = VARIANTS[name]
    settings = Settings()
    config = replace(demo_trainer_config(settings, seed, background=False), epochs=epochs)
    out = io.StringIO()
    started = time.perf_counter()
    result = run_demo(settings, events=events, seed=seed, show_users=0, background=False,
                      train_at=[int(f * events) for f in fractions], trainer_config=config,
                      out=out)
    wall = time.perf_counter() - started
    row = {"seed": seed, "variant": name, "events": events, "train_at_fraction": fractions,
           "epochs": epochs, "wall_s": round(wall, 1), "swaps": result.swaps}
    for label, phase in (("online", result.online), ("deep", result.deep)):
        row[label] = {"hr": round(phase.hit_rate, 4), "oracle": round(phase.oracle_hit_rate, 4),
                      "ratio": round(phase.ratio, 4), "judged": phase.judged}
    row["all_ratio"] = round(result.hit_rate_vs_oracle, 4)
    row["trainer_lines"] = [line for line in out.getvalue().splitlines() if "trainer" in line
                            or "hot-swapped" in line or "rejected" in line]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["now"])
    args = parser.parse_args()
    for name in args.variants:
        for seed in args.seeds:
            row = run_variant(seed, name)
            print(f"seed {seed} {name}: online {row['online']['ratio']:.2f}, with deep "
                  f"{row['deep']['hr']:.3f} / {row['deep']['oracle']:.3f} "
                  f"({row['deep']['ratio']:.2f}), all {row['all_ratio']:.2f}, "
                  f"{row['wall_s']:.0f} s", flush=True)
            save_results(f"demo_schedule_{name}_seed{seed}", row)


if __name__ == "__main__":
    main()

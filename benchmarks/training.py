"""Retraining and release time: SASRec on 100,000 ML-100K events, then export + parity.

Measures what the trainer does on every retrain, on this machine, with 2 torch threads:

1. ``train_model`` from scratch on all 100,000 ML-100K events (the epochs, learning rate
   and context length of the ``deep`` system's first model, ``DEEP_TRAINER``). Target: < 60 s.
2. A warm-started retrain on the same data with the ``deep`` system's warm epochs.
3. ``build_release``: ONNX export (dynamo, and TorchScript for reference) plus the parity
   check at batch 1 and 32. The first dynamo export in a process pays its one-off set-up,
   so cold and warm are reported apart. Target: < 10 s.

CPU seconds are printed next to wall seconds: on a shared machine a wall time far above
CPU time means the run was waiting for a core, not computing.

    .venv/bin/python benchmarks/training.py [--epochs 20] [--data ../shared/data/ml-100k/u.data]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scoring import save  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k" / "u.data"


def timed(fn):  # type: ignore[no-untyped-def]
    """(result, wall seconds, process CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    from streamrec.app.evaluation.systems import SystemOptions, build_deep_trainer
    from streamrec.export.release import build_release
    from streamrec.export.train import train_model
    from streamrec.producers.logs import read_log

    # What the replay's deep system retrains with (DEEP_TRAINER), except 2 torch threads.
    defaults = build_deep_trainer(SystemOptions())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--warm-epochs", type=int, default=defaults.warm_epochs)
    args = parser.parse_args()
    events = read_log(args.data, "movielens")
    hp = dict(lr=defaults.lr, dim=defaults.dim, max_len=defaults.max_len,
              n_blocks=defaults.n_blocks, dropout=defaults.dropout,
              batch_size=defaults.batch_size, threads=2,
              label_smoothing=defaults.label_smoothing, weight_decay=defaults.weight_decay)
    print(f"{len(events):,} events; training from scratch, {args.epochs} epochs")
    scratch, wall, cpu = timed(lambda: train_model(events, epochs=args.epochs, **hp))
    out: dict = {"events": len(events), "items": len(scratch.vocab),
                 "epochs": args.epochs, "from_scratch": {
                     "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                     "epoch_wall_s": [round(e.seconds, 2) for e in scratch.epochs],
                     "final_loss": round(scratch.epochs[-1].loss, 4)}}
    print(f"from scratch: {wall:.1f} s wall, {cpu:.1f} s CPU (target < 60 s)")
    warm, wall, cpu = timed(lambda: train_model(events, epochs=args.warm_epochs,
                                                warm_start=scratch, seed=1, **hp))
    out["warm_start"] = {"epochs": args.warm_epochs, "wall_s": round(wall, 2),
                         "cpu_s": round(cpu, 2), "warm_started": warm.warm_started,
                         "final_loss": round(warm.epochs[-1].loss, 4)}
    print(f"warm start ({args.warm_epochs} epochs): {wall:.1f} s wall, {cpu:.1f} s CPU")
    for label, exporter in (("dynamo_cold", "dynamo"), ("dynamo_warm", "dynamo"),
                            ("torchscript", "torchscript")):
        release, wall, cpu = timed(lambda: build_release(scratch, exporter=exporter))
        out[f"export_parity_{label}"] = {
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            **{k: round(v, 3) for k, v in release.timings.items()},
            "max_abs_diff": {str(b): d for b, d in release.fixture.max_abs_diff.items()}}
        print(f"export + parity ({label}): {wall:.2f} s wall (export "
              f"{release.timings['export_s']:.2f} s, parity {release.timings['parity_s']:.2f}"
              f" s), max |ORT - torch| {max(release.fixture.max_abs_diff.values()):.1e} "
              f"(target < 10 s, <= 1e-4)")
    out["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    save("training", out)


if __name__ == "__main__":
    main()

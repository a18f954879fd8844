"""CPU seconds per click of the ``streamrec`` replay system, this tree against a reference commit.

The system is the one ``streamrec replay --systems streamrec`` runs (``build_systems``:
ingest -> user-state -> scorer on the in-process bus, one click per batch because replay
asks before each click is learned), driven by the ``PrequentialEvaluator`` over the first
``--events`` ML-100K clicks in time order (K=10, window 10,000: the CLI's defaults).

The reference is ``--reference`` (default ``main``) exported with ``git archive`` into a
temporary directory; each round runs one child process per tree, alternating (reference,
ours, reference, ours, ...), so both see the same background load. A child measures
``time.process_time()`` around the replay only (log reading, imports and system building
excluded) and writes every recommendation the scorer published (user, trigger, items,
scores, explanations). The parent reports the best and median CPU s per click of each
tree, the ratio reference / ours, and checks that both trees published the same
recommendations (items and order exactly, scores and explanation values within 1e-6) and
the same HR@10 / NDCG@10.

    .venv/bin/python benchmarks/replay_streamrec_cpu.py [--events 10000] [--rounds 3]
        [--reference main]

CPU time is less sensitive to load than wall time, but the machine's 2 cores are shared:
quote the ratio of one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# No ``sys.path`` entry for ROOT here: a child imports ``streamrec`` from its PYTHONPATH.

DATA = next((path for path in (
    ROOT.parent / "shared" / "data" / "ml-100k" / "u.data",
    Path("/work/shared/data/ml-100k/u.data")) if path.exists()),
    Path("../shared/data/ml-100k/u.data"))
SCORE_TOLERANCE = 1e-6


def child(events_n: int, data: Path, out: Path) -> None:
    """Replay the first ``events_n`` clicks through the ``streamrec`` system; write the
    CPU seconds, the headline metrics and every published recommendation to ``out``."""
    from streamrec.app.evaluation import PrequentialEvaluator
    from streamrec.app.evaluation.systems import SystemOptions, build_systems
    from streamrec.consumers.score import recommendation_decoder
    from streamrec.producers.logs import read_log

    import streamrec
    events = read_log(data, "movielens")[:events_n]
    systems, unavailable = build_systems(["streamrec"], SystemOptions())
    assert not unavailable, unavailable
    evaluator = PrequentialEvaluator(systems, ks=(10,), window=10_000)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = evaluator.run(events)
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    system = systems["streamrec"]
    published = []
    for partition, log in enumerate(system.bus.topic(system.settings.topics.recommendations)):
        for record in log:
            if record.value is None:
                continue
            message = recommendation_decoder.decode(record.value)
            published.append([partition, record.offset, message.user_id, message.trigger_id,
                              message.model_version,
                              [[i.item_id, i.score, sorted(i.components.items())]
                               for i in message.items]])
    overall = result.summary()["streamrec"]["overall"]
    out.write_text(json.dumps({
        "tree": str(Path(streamrec.__file__).resolve().parents[1]),
        "events": len(events), "cpu_s": cpu_s, "wall_s": wall_s,
        "hr@10": overall["hr@10"], "ndcg@10": overall["ndcg@10"],
        "published": published}))


def same_recommendations(a: list, b: list) -> tuple[bool, str]:
    """Items and order exactly, scores and explanation values within ``SCORE_TOLERANCE``."""
    if len(a) != len(b):
        return False, f"{len(a)} vs {len(b)} recommendations"
    for ra, rb in zip(a, b):
        if ra[:5] != rb[:5] or len(ra[5]) != len(rb[5]):
            return False, f"trigger {ra[:5]} vs {rb[:5]}"
        for (item_a, score_a, parts_a), (item_b, score_b, parts_b) in zip(ra[5], rb[5]):
            if item_a != item_b or abs(score_a - score_b) > SCORE_TOLERANCE:
                return False, f"trigger {ra[3]}: {item_a} {score_a} vs {item_b} {score_b}"
            if [k for k, _ in parts_a] != [k for k, _ in parts_b] or any(
                    abs(va - vb) > SCORE_TOLERANCE for (_, va), (_, vb) in zip(parts_a, parts_b)):
                return False, f"trigger {ra[3]} item {item_a}: {parts_a} vs {parts_b}"
    return True, f"{len(a)} recommendations identical"


def export_tree(reference: str, into: Path) -> str:
    """``git archive`` of ``reference`` into ``into``; returns the commit."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", reference], check=True,
                            capture_output=True, text=True).stdout.strip()
    archive = into / "tree.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), commit], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="tar")
    return commit


def run_child(tree: Path, events_n: int, data: Path, out: Path) -> dict:
    # The tree first on the path: its ``streamrec`` shadows the editable install's.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(out),
                    "--events", str(events_n), "--data", str(data)],
                   check=True, cwd=tree, env=env)
    payload = json.loads(out.read_text())
    assert Path(payload["tree"]) == tree.resolve(), (payload["tree"], tree)
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reference", default="main")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.events, args.data, args.child)
        return
    ours_commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True,
                                 capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                 "--untracked-files=no"], check=True, capture_output=True,
                                text=True).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="replay-cpu-") as tmp:
        work = Path(tmp)
        reference_commit = export_tree(args.reference, work)
        trees = {"reference": work / "tree", "ours": ROOT}
        runs: dict[str, list[dict]] = {"reference": [], "ours": []}
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                payload = run_child(tree, args.events, args.data, work / f"{name}.json")
                runs[name].append(payload)
                print(f"round {round_ + 1}/{args.rounds} {name:9s} "
                      f"{payload['cpu_s'] / payload['events'] * 1e3:.3f} ms CPU per click "
                      f"(wall {payload['wall_s']:.1f} s)", flush=True)
    identical, detail = same_recommendations(runs["reference"][-1]["published"],
                                             runs["ours"][-1]["published"])
    summary: dict[str, dict] = {}
    for name, payloads in runs.items():
        per_click = [p["cpu_s"] / p["events"] for p in payloads]
        summary[name] = {"cpu_s_per_click_best": min(per_click),
                         "cpu_s_per_click_median": statistics.median(per_click),
                         "cpu_s_per_click_all": per_click,
                         "hr@10": payloads[-1]["hr@10"], "ndcg@10": payloads[-1]["ndcg@10"]}
    ratio_best = (summary["reference"]["cpu_s_per_click_best"]
                  / summary["ours"]["cpu_s_per_click_best"])
    ratio_median = (summary["reference"]["cpu_s_per_click_median"]
                    / summary["ours"]["cpu_s_per_click_median"])
    metrics_equal = all(summary["reference"][m] == summary["ours"][m]
                        for m in ("hr@10", "ndcg@10"))
    payload = {
        "events": args.events, "rounds": args.rounds, "data": str(args.data),
        "reference_tree": {"ref": args.reference, "commit": reference_commit},
        "ours_tree": {"commit": ours_commit, "uncommitted_changes": dirty},
        **summary,  # "reference" and "ours": the figures
        "speedup_best": ratio_best, "speedup_median": ratio_median,
        "recommendations_identical": identical, "recommendations_check": detail,
        "metrics_equal": metrics_equal,
    }
    print(f"reference {args.reference} ({reference_commit[:10]}): "
          f"{summary['reference']['cpu_s_per_click_best'] * 1e3:.3f} ms CPU per click (best), "
          f"ours ({ours_commit[:10]}{' + changes' if dirty else ''}): "
          f"{summary['ours']['cpu_s_per_click_best'] * 1e3:.3f} ms")
    print(f"speed-up {ratio_best:.2f}x best, {ratio_median:.2f}x median; {detail}; "
          f"hr@10 {summary['ours']['hr@10']:.4f} ndcg@10 {summary['ours']['ndcg@10']:.4f} "
          f"({'equal' if metrics_equal else 'DIFFERENT'})")
    from scoring import save
    save("replay_streamrec_cpu", payload)
    if not (identical and metrics_equal):
        sys.exit(1)


if __name__ == "__main__":
    main()

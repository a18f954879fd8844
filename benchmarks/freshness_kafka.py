"""Click -> recommendation freshness on a real broker, paced and at full speed (issue 13, item 3).

One ingest and one scorer run as their own processes (``streamrec ingest``, ``streamrec score``,
as deployed) on fresh topics; the replay's producer publishes a synthetic log (2,000 users,
1,000 items, about one click per second of event time) and its reader follows
``recommendations`` (``streamrec replay --via-kafka`` without ``--start-services``). Each run
reports, from the reader's side:

- click produced -> its recommendation received (p50 / p95 / p99, ms): the latency an app
  sees; also per click, to the first recommendation reflecting it, and the scorer's own
  ranking and delivery (commit + read) times;
- how many clicks per second went through, and how long the pipeline took to drain after the
  last click was produced (the scorer's lag at the end: bounded if it is a small part of the
  run, growing with the run if the pipeline falls behind);
- the share of returning users' clicks that met a recommendation computed after their previous
  click.

Runs: ``--speeds 1000,max`` (events per second of wall time; ``max`` = as fast as the producer
goes). Targets (issue 13): p99 <= 50 ms at 1,000 events/s paced; >= 5,000 events/s at max.
Latency is absolute by nature: the reference printed beside it is the producer's own rate
(what the pipeline was offered). A shared machine inflates both; read the load printed.

    scripts/with-kafka.sh .venv/bin/python benchmarks/freshness_kafka.py [--events 20000] [--speeds 1000,max]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_results import save_results  # noqa: E402

from streamrec.app.evaluation.via_kafka import ViaKafkaOptions, run_replay_via_kafka  # noqa: E402
from streamrec.config import Settings  # noqa: E402
from streamrec.producers.synthetic import SyntheticStream  # noqa: E402
from streamrec.transport.topics import create_topics  # noqa: E402

TARGET_P99_MS = 50.0
TARGET_MAX_EVENTS_PER_S = 5_000.0
STREAMREC = Path(sys.executable).with_name("streamrec")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, process: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a service exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"a service was not ready within {timeout_s:.0f} s")


def start_services(bootstrap: str, prefix: str, extra_env: dict[str, str]) -> list[subprocess.Popen]:
    """``streamrec ingest`` and ``streamrec score`` on ``prefix``'s topics, once both are ready."""
    processes, ports = [], []
    for command in ("ingest", "score"):
        port = _free_port()
        env = {**os.environ, "STREAMREC_BOOTSTRAP_SERVERS": bootstrap,
               "STREAMREC_TOPIC_PREFIX": prefix, "STREAMREC_METRICS_PORT": str(port),
               "STREAMREC_LOG_LEVEL": "warning", **extra_env}
        processes.append(subprocess.Popen([str(STREAMREC), command], env=env,
                                          stdout=subprocess.DEVNULL))
        ports.append(port)
    for process, port in zip(processes, ports):
        _wait_ready(port, process)
    time.sleep(2.0)  # both groups settled (ready = assigned and restored)
    return processes


def stop_services(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def measure(bootstrap: str, events: list, speed: float | None, extra_env: dict[str, str]) -> dict:
    prefix = f"fresh-{uuid.uuid4().hex[:6]}-"
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    create_topics(settings)
    processes = start_services(bootstrap, prefix, extra_env)
    try:
        result = run_replay_via_kafka(events, settings, [10], 1_000,
                                      ViaKafkaOptions(speed=speed, timeout_s=300.0,
                                                      progress=False))
    finally:
        stop_services(processes)
    section: dict = result.extra["via_kafka"]  # type: ignore[assignment]
    latency = section["e2e_latency_ms"]  # a click produced -> its recommendation received
    produce_s = section["produce_wall_s"]
    wall = result.wall_time_s  # first click produced -> last recommendation received
    return {
        "speed": "max" if speed is None else speed,
        "events": section["events_produced"],
        "produced_per_s": round(section["events_per_s_produced"], 1),
        "answered_per_s": round(section["events_produced"] / wall, 1) if wall else None,
        "drain_after_last_click_s": round(wall - produce_s, 3),
        "click_to_recommendation_ms": _rounded(latency),
        "click_to_reflecting_recommendation_ms": _rounded(
            section["event_to_reflecting_recommendation_ms"]),
        "scorer_score_ms": _rounded(section["scorer_score_ms"]),
        "delivery_ms": _rounded(section["delivery_ms"]),
        "fresh_share": section["warm_events_with_fresh_recommendation_share"],
        "recommendations_received": section["recommendations_received"],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _rounded(summary: dict) -> dict:
    return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in summary.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--speeds", default="1000,max",
                        help="comma-separated events per second of wall time, or max")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra STREAMREC_* setting for both services (repeatable)")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        sys.exit("set KAFKA_BOOTSTRAP_SERVERS or run through scripts/with-kafka.sh")
    speeds: list[float | None] = []
    for word in args.speeds.split(","):
        try:
            speeds.append(None if word.strip() == "max" else float(word))
        except ValueError:
            sys.exit(f"--speeds: {word!r} is neither a number nor max")
    extra_env = dict(item.split("=", 1) for item in args.env if "=" in item)
    events = list(SyntheticStream(n_users=2_000, n_items=1_000, n_events=args.events,
                                  seed=args.seed).events())
    runs = []
    for speed in speeds:
        run = measure(bootstrap, events, speed, extra_env)
        runs.append(run)
        lat = run["click_to_recommendation_ms"]
        print(f"speed {run['speed']}: produced {run['produced_per_s']:,.0f}/s, answered "
              f"{run['answered_per_s']:,.0f}/s, drained {run['drain_after_last_click_s']:.2f} s "
              f"after the last click; click -> recommendation p50 {lat['p50']} ms, p95 "
              f"{lat['p95']} ms, p99 {lat['p99']} ms; fresh {run['fresh_share']:.0%} "
              f"(load {run['load_average_1m']})", flush=True)
    print(json.dumps({"targets": {"p99_ms_at_1000_per_s": TARGET_P99_MS,
                                  "events_per_s_at_max": TARGET_MAX_EVENTS_PER_S}}))
    save_results("freshness_kafka", {"events": args.events, "seed": args.seed,
                                     "env": extra_env, "runs": runs,
                                     "target_p99_ms": TARGET_P99_MS,
                                     "target_events_per_s": TARGET_MAX_EVENTS_PER_S})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

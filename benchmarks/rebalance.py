"""Restore work per rebalance when ingest scales 1 -> 2 -> 1, next to the old behaviour.

Two runs on one broker, each on its own topics with the same pre-filled clicks:

* ``rebuild`` (the reference, ``keep_state_on_rebalance=False``): every rebalance drops
  and restores every partition a member owns, as the runtime did before;
* ``keep``: a member keeps the state of the partitions it still owns and restores only
  the newly assigned ones (``streamrec.transport.assignment``).

For each scaling step it prints the partitions restored and the records re-read (changelog
records plus re-warmed inputs) by both instances, and saves JSON. The ratio keep / rebuild
is what the change saves, whatever the machine's speed.

    scripts/with-kafka.sh .venv/bin/python benchmarks/rebalance.py [--events 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_results import save_results  # noqa: E402

from streamrec.consumers.ingest import IngestProcessor  # noqa: E402
from streamrec.producers.publisher import ClickPublisher  # noqa: E402
from streamrec.producers.synthetic import SyntheticStream  # noqa: E402
from streamrec.config import Settings  # noqa: E402
from streamrec.app.services import ingest_service  # noqa: E402
from streamrec.transport.topics import create_topics  # noqa: E402


class Instance:
    """One ingest member running in a thread, with its restore counters."""

    def __init__(self, settings: Settings, name: str, keep: bool) -> None:
        self.events = 0
        processor = IngestProcessor(settings)
        process = processor.process

        def counting(batch):  # type: ignore[no-untyped-def]
            self.events += len(batch)
            return process(batch)

        processor.process = counting  # type: ignore[method-assign]
        self.service = ingest_service(settings, name, processor=processor,
                                      keep_state_on_rebalance=keep)
        self.thread = threading.Thread(target=self.service.run, daemon=True, name=name)
        self.thread.start()

    def work(self) -> tuple[int, int]:
        return self.service.partitions_restored, self.service.records_restored

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(120)


def _publish(settings: Settings, events: list) -> None:  # type: ignore[type-arg]
    with ClickPublisher.from_settings(settings) as publisher:
        for event in events:
            publisher.publish(event)


def _settle(instances: list[Instance], processed: int, partitions: int,
            timeout_s: float = 300.0) -> None:
    """Wait until the instances hold every partition between them, processed ``processed``
    events together, and nothing changed for 5 s."""
    deadline = time.monotonic() + timeout_s
    last, quiet_since = None, time.monotonic()
    while time.monotonic() < deadline:
        held = [i.service.partitions_held for i in instances]
        now = (sum(i.events for i in instances), [i.work() for i in instances], held)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif (now[0] >= processed and sorted(p for h in held for p in h) == list(range(partitions))
              and all(held) and time.monotonic() - quiet_since > 5.0):
            return
        time.sleep(0.5)
    raise SystemExit(f"instances did not settle within {timeout_s:.0f} s: {last}")


def _delta(before: list[tuple[int, int]], instances: list[Instance]) -> dict[str, int]:
    after = [i.work() for i in instances]
    return {"partitions_restored": sum(a[0] - b[0] for a, b in zip(after, before)),
            "records_reread": sum(a[1] - b[1] for a, b in zip(after, before))}


def run(bootstrap: str, events: list, extra: list, keep: bool) -> dict[str, dict[str, int]]:  # type: ignore[type-arg]
    prefix = f"rebal-{'keep' if keep else 'rebuild'}-{uuid.uuid4().hex[:6]}."
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix, batch_size=500)
    create_topics(settings)
    _publish(settings, events)
    a = Instance(settings, "a", keep)
    _settle([a], len(events), settings.partitions)
    before = [a.work(), (0, 0)]  # b starts from nothing
    b = Instance(settings, "b", keep)  # scale out: 1 -> 2
    _settle([a, b], len(events), settings.partitions)
    out = _delta(before, [a, b])
    _publish(settings, extra)  # both own partitions with new state now
    _settle([a, b], len(events) + len(extra), settings.partitions)
    before = [a.work()]
    b.stop()  # scale in: 2 -> 1 (a dynamic member leaves the group at once)
    _settle([a], len(events) + len(extra) - b.events, settings.partitions)
    back = _delta(before, [a])
    a.stop()
    return {"scale_out_1_to_2": out, "scale_in_2_to_1": back}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        sys.exit("set KAFKA_BOOTSTRAP_SERVERS or run through scripts/with-kafka.sh")
    stream = list(SyntheticStream(n_users=4_000, n_items=1_500,
                                  n_events=args.events + args.events // 10, seed=3).events())
    events, extra = stream[:args.events], stream[args.events:]
    results = {}
    for mode, keep in (("rebuild", False), ("keep", True)):
        print(f"{mode}: {len(events):,} events, then 1 -> 2 -> 1 instances…", flush=True)
        results[mode] = run(bootstrap, events, extra, keep)
    print(f"{'step':<18} {'rebuild: parts / records':>26} {'keep: parts / records':>24} {'ratio':>7}")
    ratios = {}
    for step in ("scale_out_1_to_2", "scale_in_2_to_1"):
        r, k = results["rebuild"][step], results["keep"][step]
        ratios[step] = round(k["records_reread"] / max(1, r["records_reread"]), 3)
        print(f"{step:<18} {r['partitions_restored']:>12} / {r['records_reread']:>11,} "
              f"{k['partitions_restored']:>10} / {k['records_reread']:>11,} {ratios[step]:>7}")
    save_results("rebalance", {"events": args.events, "extra_events": len(extra),
                               "partitions": Settings().partitions, **results,
                               "ratio_keep_to_rebuild": ratios})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How often Python's cyclic garbage collector runs in streamrec's processes.

The hot paths allocate many short-lived containers (numpy arrays, per-trigger lists and
dicts) while the processes hold hundreds of thousands of long-lived ones (user states,
item-side rows, the replay's events). With CPython's default thresholds (700, 10, 10) the
collector runs a young-generation pass every 700 allocations and, every so often, a full
pass over every tracked object: profiled on the scorer (ML-100K, 20,000 triggers) it took
~18% of the CPU, 12 full passes of ~0.28 s each. Reference counting frees almost all of
this garbage anyway (no reference cycles on the hot paths), so the collector only needs to
run rarely. ``benchmarks/gc_policy.py`` (the scorer on ML-100K states, deep model on, one
core, both policies alternately in one process): 1.24x to 1.37x fewer µs a trigger, best
rounds. The six-system replay (a batch of one per click) did not move (203 s vs 199 s).
The thresholds were not tuned: one value tried, an order of magnitude fewer passes.

The policy never changes a result: collection timing is invisible to the pure processors.
"""

from __future__ import annotations

import gc

# A young pass per 50,000 net allocations; the older generations as by default relative to it.
THRESHOLDS = (50_000, 20, 100)


def apply_gc_policy() -> None:
    """Set the collector's thresholds for this process (the CLI and replay workers call it)."""
    gc.set_threshold(*THRESHOLDS)

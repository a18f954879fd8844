"""A batch's transaction finishing on a helper thread while the loop processes the next batch.

Much of a transactional batch's wall time is waiting on the broker: the flush of the sends
and ``commit_transaction`` (EndTxn, answered once the commit is prepared) are round trips
during which the loop thread would sit idle (~10 ms a batch of 500 on one local broker, next
to ~20 ms for the offsets, which must stay on the loop's thread: see the runtime's commit
order). ``PendingCommit`` runs that tail on a helper thread, so the loop can poll and process
the next batch meanwhile (the waits release the GIL).

What makes this safe is the runtime's failure rule: a batch counts as committed only once its
tail has been proven (``settle`` returns), and a failed tail fails the session, which drops all
in-memory state (the next batch's effects included) and resumes from the committed offsets. The
next batch's outputs are only sent after the pending tail settled (a producer has one
transaction at a time), and nothing that reads committed positions (a rebalance's restore, a
poison-pill isolation) runs while a tail is pending.
"""

from __future__ import annotations

import threading
from typing import Callable


class PendingCommit:
    """Runs ``finish`` (steps 4-5 of the runtime's commit order) on a daemon thread.

    ``settle()`` waits for it and re-raises whatever it raised; ``on_settled`` (the loop's
    bookkeeping: committed offsets, metrics) runs in the caller's thread, once, on success.
    ``finish`` bounds its own waits (``bounded_call``, ``check_delivered``), so ``settle``
    returns within them.
    """

    def __init__(self, finish: Callable[[], None], on_settled: Callable[[], None]) -> None:
        self._on_settled = on_settled
        self._done = threading.Event()
        self._error: BaseException | None = None

        def run() -> None:
            try:
                finish()
            except BaseException as error:  # noqa: BLE001 - handed to settle()
                self._error = error
            finally:
                self._done.set()

        self._thread = threading.Thread(target=run, daemon=True, name="transaction-tail")
        self._thread.start()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def settle(self) -> None:
        """Wait for the tail; raise its error, else run the bookkeeping."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        self._on_settled()

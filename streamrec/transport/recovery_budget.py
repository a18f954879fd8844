"""Recovery budget: how many failed sessions in a row a service survives, and how long it waits.

A session (consumer, transactional producer, in-memory state) that fails is torn down and
a new one resumes from the committed state. Transient failures (a broker restart, a
rebalance during a commit, a timeout) are spread over a service's life: counting them all
would end a long-lived service on its 11th one, hours apart. So the budget counts
*consecutive* failed sessions and resets whenever a batch was committed in between; the
service ends only when

- the error says retrying cannot help (configuration, authentication, authorization), or
- the very first session never reached the broker (a wrong address: the orchestrator,
  which restarts it, is the place to wait for a broker that is not up yet), or
- ``max_consecutive`` sessions in a row failed without committing anything.

>>> budget = RecoveryBudget(max_consecutive=2, base_delay_s=1.0, max_delay_s=30.0)
>>> budget.next_delay(TimeoutError("commit timed out")), budget.next_delay(TimeoutError())
(1.0, 2.0)
>>> budget.progressed()
>>> budget.next_delay(TimeoutError())
1.0
"""

from __future__ import annotations

from kafka import errors as kafka_errors

from streamrec.transport import kafka_clients
from streamrec.config import ConfigError

# Errors no retry can fix besides the client's own (``kafka_clients.is_fatal``: refused
# credentials, missing ACLs, a bad client configuration, failed TLS handshakes).
FATAL_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    kafka_errors.InvalidConfigurationError,      # the broker refused a configuration
    kafka_errors.UnsupportedSaslMechanismError,
)


def is_fatal(error: BaseException) -> bool:
    """True if ``error`` (or an error it was raised from) is one no retry can fix."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, FATAL_ERRORS) or kafka_clients.is_fatal(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class RecoveryBudget:
    """Counts consecutive failed sessions; ``next_delay`` says how long to back off, or stop.

    ``max_consecutive`` failed sessions in a row are recovered from; the next one ends the
    service. The delay doubles from ``base_delay_s`` per consecutive failure, capped at
    ``max_delay_s``, and starts over after progress.
    """

    def __init__(self, max_consecutive: int = 10, base_delay_s: float = 1.0,
                 max_delay_s: float = 30.0) -> None:
        if max_consecutive < 0:
            raise ValueError(f"max_consecutive must not be negative, got {max_consecutive!r}")
        if base_delay_s < 0 or max_delay_s < base_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")
        self.max_consecutive = max_consecutive
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.consecutive = 0  # failed sessions since the last committed batch
        self.total = 0  # failed sessions over the service's life (reported, never a limit)

    def progressed(self) -> None:
        """A batch was committed: whatever failed before is over."""
        self.consecutive = 0

    def next_delay(self, error: BaseException, *, ever_connected: bool = True) -> float | None:
        """Seconds to wait before the next session, or None: the service must end."""
        self.total += 1
        if is_fatal(error) or not ever_connected:
            return None
        self.consecutive += 1
        if self.consecutive > self.max_consecutive:
            return None
        # 2 ** n grows past any float for huge n: cap the exponent first.
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** min(self.consecutive - 1, 60))

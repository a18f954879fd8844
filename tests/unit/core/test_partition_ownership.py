"""What a rebalance drops, restores and keeps (streamrec.transport.assignment), without a broker."""

from __future__ import annotations

from kafka import TopicPartition

from streamrec.transport.assignment import PartitionOwnership

TOPICS = ["user-state", "requests"]


def tps(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in TOPICS for p in partitions]


def holding(*partitions: int, offsets: dict | None = None) -> PartitionOwnership:
    ownership = PartitionOwnership(TOPICS)
    for p in partitions:
        ownership.restored(p, {t: (offsets or {}).get((t, p)) for t in TOPICS})
    return ownership


def test_first_assignment_restores_everything() -> None:
    ownership = PartitionOwnership(TOPICS)
    ownership.on_partitions_assigned(tps(0, 1))
    assert ownership.changed
    change = ownership.reconcile(tps(0, 1), lambda t, p: None)
    assert (change.drop, change.restore, change.kept) == ([], [0, 1], [])
    assert not ownership.changed


def test_scaling_out_drops_only_what_moved_and_restores_nothing() -> None:
    ownership = holding(0, 1, 2, 3)
    ownership.committed({("user-state", 2): 40, ("requests", 2): 3})
    ownership.on_partitions_revoked(tps(0, 1, 2, 3))
    ownership.on_partitions_assigned(tps(2, 3))
    committed = {("user-state", 2): 40, ("requests", 2): 3}
    change = ownership.reconcile(tps(2, 3), lambda t, p: committed.get((t, p)))
    assert (change.drop, change.restore, change.kept) == ([0, 1], [], [2, 3])
    assert ownership.held == {2, 3}


def test_scaling_in_restores_only_the_new_partitions() -> None:
    ownership = holding(2, 3)
    change = ownership.reconcile(tps(0, 1, 2, 3), lambda t, p: None)
    assert (change.drop, change.restore, change.kept) == ([], [0, 1], [2, 3])


def test_a_kept_partition_someone_else_committed_meanwhile_is_rebuilt() -> None:
    # Another member owned partition 1 during the rebalance and committed past our state.
    ownership = holding(0, 1)
    ownership.committed({("user-state", 0): 10, ("user-state", 1): 10})
    moved = {("user-state", 0): 10, ("user-state", 1): 25}
    change = ownership.reconcile(tps(0, 1), lambda t, p: moved.get((t, p)))
    assert (change.drop, change.restore, change.kept) == ([1], [1], [0])
    assert ownership.held == {0}  # until the loop restores it
    ownership.restored(1, {"user-state": 25, "requests": None})
    assert ownership.held == {0, 1} and ownership.vouched[("user-state", 1)] == 25


def test_lost_partitions_are_never_kept_even_if_assigned_again() -> None:
    ownership = holding(0, 1)
    ownership.on_partitions_lost(tps(0, 1))
    change = ownership.reconcile(tps(0, 1), lambda t, p: None)
    assert (change.drop, change.restore, change.kept) == ([0, 1], [0, 1], [])


def test_forgotten_partitions_are_restored_on_the_next_assignment() -> None:
    ownership = holding(0, 1)
    ownership.forget([1])
    change = ownership.reconcile(tps(0, 1), lambda t, p: None)
    assert (change.drop, change.restore, change.kept) == ([], [1], [0])


def test_without_keep_every_rebalance_rebuilds_everything() -> None:
    # The reference behaviour benchmarks/rebalance.py measures against.
    ownership = PartitionOwnership(TOPICS, keep=False)
    ownership.restored(0, {t: None for t in TOPICS})
    ownership.restored(1, {t: None for t in TOPICS})
    change = ownership.reconcile(tps(0, 1), lambda t, p: None)
    assert (change.drop, change.restore, change.kept) == ([0, 1], [0, 1], [])

"""Tiny data and settings shared by the export tests (import: ``unit.export.export_helpers``)."""

from __future__ import annotations


def tiny_sequences(n_users: int = 40, length: int = 25, n_items: int = 30) -> list[list[str]]:
    """Users walking a cycle of items: enough structure for a model to learn."""
    return [[f"i{(user * 7 + step) % n_items}" for step in range(length)]
            for user in range(n_users)]


# Small and single-threaded: these tests check behaviour, never speed.
TINY = dict(epochs=3, dim=16, max_len=12, n_blocks=1, n_heads=2, threads=1, on_epoch=None)

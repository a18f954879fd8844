"""The contract between the exported graph and its readers, importable without torch.

Training exports a graph with exactly these names; serving and the parity checks feed and
read it by them. Keeping them here lets ``serving.py`` and ``store.py`` stay torch-free.
"""

from __future__ import annotations

OPSET = 18
INPUT_NAME = "item_seq"  # int64 [batch, max_len], left-padded with 0
OUTPUT_NAME = "user_vector"  # float32 [batch, dim]

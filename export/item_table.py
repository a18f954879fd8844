"""A published model's item table, read and checked with numpy alone.

Ingest adopts the item vectors of each new deep model into its online embeddings; it needs
the item ids and the table, not the graph, so it reads just those two files of the model
folder (see ``streamrec.export.store``), each checked against the sha256 the version's manifest in
the store gives (``load_published_item_table``). No torch, no ONNX Runtime: the ingest
image has neither to spare.

The decoders here are the border for those two files: ``decode_item_ids`` and
``decode_item_table`` raise ``ModelRejected`` and nothing else (no pickle, dtype and shape
checked, finite values only: one NaN in a table would spread into every user vector that
adopts it). ``ModelRejected`` lives in ``streamrec.export.store_root`` and is re-exported here.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from streamrec.export.store_root import (FILE_CAPS, ITEMS_FILE, MANIFEST, TABLE_FILE, ModelRejected,
                               check_size, read_capped, read_manifest, read_verified,
                               sha256_bytes, version_folder)

__all__ = ["ITEMS_FILE", "MANIFEST", "TABLE_FILE", "ITEM_TABLE_FILES", "ModelRejected",
           "sha256_bytes", "decode_item_ids", "decode_item_table", "parse_item_table",
           "load_item_table", "load_published_item_table", "item_table_checksums"]

ITEM_TABLE_FILES = (ITEMS_FILE, TABLE_FILE)
MAX_ITEM_ID_CHARS = 1024
MAX_DIM = 4096


def decode_item_ids(raw: bytes, where: str = "") -> list[str]:
    """The item ids of ``items.json``: a JSON list of distinct, bounded strings."""
    check_size(len(raw), FILE_CAPS[ITEMS_FILE], ITEMS_FILE, where)
    try:
        item_ids = json.loads(raw)
    except Exception as exc:  # noqa: BLE001 - RecursionError, UnicodeDecodeError, MemoryError
        raise ModelRejected("bad_manifest", f"{ITEMS_FILE} is not JSON: "
                            f"{type(exc).__name__}", where) from None
    if not isinstance(item_ids, list) or not all(
            isinstance(i, str) and 0 < len(i) <= MAX_ITEM_ID_CHARS for i in item_ids):
        raise ModelRejected("bad_manifest", f"{ITEMS_FILE} is not a list of item ids", where)
    if len(set(item_ids)) != len(item_ids):
        raise ModelRejected("bad_manifest", f"{ITEMS_FILE} repeats an item id", where)
    return item_ids


def decode_item_table(raw: bytes, n_items: int, where: str = "") -> np.ndarray:
    """float32 C-contiguous ``[n_items + 1, d]`` (row 0 padding), finite, from ``.npy`` bytes."""
    check_size(len(raw), FILE_CAPS[TABLE_FILE], TABLE_FILE, where)
    try:
        table = np.load(io.BytesIO(raw), allow_pickle=False)
        if not isinstance(table, np.ndarray):
            raise ValueError("not a single array")
        ok_shape = (table.dtype == np.float32 and table.ndim == 2
                    and table.shape[0] == n_items + 1 and 0 < table.shape[1] <= MAX_DIM)
        finite = ok_shape and bool(np.isfinite(table).all())
    except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, EOFError, MemoryError
        raise ModelRejected("bad_manifest", f"{TABLE_FILE} unreadable: "
                            f"{type(exc).__name__}: {str(exc)[:200]}", where) from None
    if not ok_shape:
        raise ModelRejected("bad_manifest", f"item table {table.dtype}{table.shape} does not "
                            f"match {n_items} items", where)
    if not finite:
        raise ModelRejected("non_finite", f"{TABLE_FILE} holds NaN or infinite values", where)
    return np.ascontiguousarray(table)


def parse_item_table(items_json: bytes, table_npy: bytes,
                     where: str = "") -> tuple[list[str], np.ndarray]:
    """(item ids, float32 table with its padding row 0) from the two files' bytes.

    Parsed from the bytes whose checksum was verified, never from a second read of the file.
    """
    item_ids = decode_item_ids(items_json, where)
    return item_ids, decode_item_table(table_npy, len(item_ids), where)


def load_item_table(folder: str | Path,
                    sha256: Mapping[str, str]) -> tuple[list[str], np.ndarray]:
    """Item ids and their vectors (padding row dropped: row ``i`` is ``item_ids[i]``).

    ``folder`` is trusted as given (an operator's path): services call
    ``load_published_item_table`` instead. ``sha256`` must name both item-table files;
    raises ``ModelRejected`` instead of returning anything unverified.
    """
    where = str(folder)
    contents: dict[str, bytes] = {}
    for name in ITEM_TABLE_FILES:
        if name not in sha256:
            raise ModelRejected("bad_manifest", f"no sha256 given for {name}", where)
        contents[name] = read_capped(Path(folder), name)
        if sha256_bytes(contents[name]) != sha256[name]:
            raise ModelRejected("checksum_mismatch", f"{name} sha256 "
                                f"{sha256_bytes(contents[name])[:12]}… != expected "
                                f"{str(sha256[name])[:12]}…", where)
    item_ids, table = parse_item_table(contents[ITEMS_FILE], contents[TABLE_FILE], where)
    return item_ids, table[1:]


def load_published_item_table(root: str | Path, version: str, manifest_sha256: str,
                              claimed_path: str | None = None
                              ) -> tuple[list[str], np.ndarray]:
    """Item ids and vectors of ``version`` in the store at ``root``.

    The folder is ``root/version`` (``claimed_path`` must be that same folder), the
    manifest must have ``manifest_sha256``, and the files the manifest's checksums: the
    message that names the version decides nothing else.
    """
    folder = version_folder(root, version, claimed_path)
    manifest, _ = read_manifest(folder, manifest_sha256)
    items, table = (read_verified(folder, manifest, name) for name in ITEM_TABLE_FILES)
    item_ids, full = parse_item_table(items, table, str(folder))
    return item_ids, full[1:]


def item_table_checksums(message: Mapping[str, Any],
                         root: str | Path | None = None) -> dict[str, str]:
    """sha256 of the item-table files of the model a ``models`` message names.

    Taken from the manifest the message pins (its sha256 is checked), so whoever adopts
    the table reads exactly the files the scorer verified. ``root`` None trusts the
    message's folder (tests, tools); a root confines it to that store.
    """
    path = Path(str(message.get("path")))
    folder = version_folder(path.parent if root is None else root, message.get("version"),
                            message.get("path"))
    manifest, _ = read_manifest(folder, str(message.get("manifest_sha256")))
    files = manifest["files"]
    if not all(name in files for name in ITEM_TABLE_FILES):
        raise ModelRejected("bad_manifest", f"{MANIFEST} lists no item table", str(folder))
    return {name: str(files[name]) for name in ITEM_TABLE_FILES}

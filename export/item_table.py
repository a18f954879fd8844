"""A published model's item table, read and checked with numpy alone.

Ingest adopts the item vectors of each new deep model into its online embeddings; it needs
the item ids and the table, not the graph, so it reads just those two files of the model
folder (see ``export.store``) and checks each against the sha256 it was given. No torch, no
ONNX Runtime: the ingest image has neither to spare.

``ModelRejected`` lives here so this reader and the full loader (``export.store``) raise
the same error with the same reason codes.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

MANIFEST = "manifest.json"
ITEMS_FILE, TABLE_FILE = "items.json", "item_table.npy"
ITEM_TABLE_FILES = (ITEMS_FILE, TABLE_FILE)


class ModelRejected(Exception):
    """A model that must not serve. ``reason`` is a short code, the message says why.

    Reasons: ``missing_file``, ``checksum_mismatch``, ``bad_manifest``, ``parity_failure``.
    """

    def __init__(self, reason: str, detail: str, location: str = "") -> None:
        super().__init__(f"model rejected ({reason}) {location}: {detail}".replace("  ", " "))
        self.reason = reason
        self.detail = detail
        self.location = location


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_item_table(items_json: bytes, table_npy: bytes,
                     where: str = "") -> tuple[list[str], np.ndarray]:
    """(item ids, float32 table with its padding row 0) from the two files' bytes.

    Parsed from the bytes whose checksum was verified, never from a second read of the file.
    """
    try:
        item_ids = json.loads(items_json)
        table = np.load(io.BytesIO(table_npy), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ModelRejected("bad_manifest", f"unreadable model files: {exc!r}", where) from None
    if (not isinstance(item_ids, list) or table.dtype != np.float32 or table.ndim != 2
            or table.shape[0] != len(item_ids) + 1):
        count = len(item_ids) if isinstance(item_ids, list) else "no list of"
        raise ModelRejected("bad_manifest", f"item table {table.dtype}{table.shape} does not "
                            f"match {count} items", where)
    return [str(i) for i in item_ids], np.ascontiguousarray(table)


def load_item_table(folder: str | Path,
                    sha256: Mapping[str, str]) -> tuple[list[str], np.ndarray]:
    """Item ids and their vectors (padding row dropped: row ``i`` is ``item_ids[i]``).

    ``sha256`` must name both item-table files; raises ``ModelRejected`` (``missing_file``,
    ``checksum_mismatch``, ``bad_manifest``) instead of returning anything unverified.
    """
    where = str(folder)
    contents: dict[str, bytes] = {}
    for name in ITEM_TABLE_FILES:
        if name not in sha256:
            raise ModelRejected("bad_manifest", f"no sha256 given for {name}", where)
        try:
            contents[name] = (Path(folder) / name).read_bytes()
        except OSError:
            raise ModelRejected("missing_file", f"{name} is missing", where) from None
        if sha256_bytes(contents[name]) != sha256[name]:
            raise ModelRejected("checksum_mismatch", f"{name} sha256 "
                                f"{sha256_bytes(contents[name])[:12]}… != expected "
                                f"{str(sha256[name])[:12]}…", where)
    item_ids, table = parse_item_table(contents[ITEMS_FILE], contents[TABLE_FILE], where)
    return item_ids, table[1:]


def item_table_checksums(message: Mapping[str, Any]) -> dict[str, str]:
    """sha256 of the item-table files of the model a ``models`` message names.

    Taken from the manifest the message pins (its sha256 is checked), so whoever adopts
    the table reads exactly the files the scorer verified.
    """
    folder = Path(str(message["path"]))
    try:
        raw = (folder / MANIFEST).read_bytes()
    except OSError as exc:
        raise ModelRejected("missing_file", f"cannot read {MANIFEST}: {exc}", str(folder)) from None
    if sha256_bytes(raw) != message.get("manifest_sha256"):
        raise ModelRejected("checksum_mismatch", f"{MANIFEST} sha256 differs from the models "
                            "message", str(folder))
    try:
        files = json.loads(raw)["files"]
        return {name: str(files[name]) for name in ITEM_TABLE_FILES}
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelRejected("bad_manifest", f"{MANIFEST} unreadable: {exc!r}",
                            str(folder)) from None

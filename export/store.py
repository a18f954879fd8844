"""Versioned model folders with checksummed manifests, and the loader that trusts nothing.

A model version is one immutable folder under the store root::

    v000007/
      model.onnx       the graph: item_seq int64 [batch, max_len] -> user_vector [batch, d]
      items.json       item ids; item i of the list is row i + 1 of the table (0 = padding)
      item_table.npy   float32 [n_items + 1, d], the tied item embeddings
      parity.npz       reference inputs and torch's outputs, re-checked at every load
      manifest.json    version, parent, data window, metrics, exporter, sha256 of each file

Folders are written under a temporary name and renamed into place, so a reader never sees a
half-written version. ``publish_message`` is the value the trainer puts on the ``models``
topic; ``load_verified`` accepts that message (or a folder path) and raises
``ModelRejected`` with a reason code on a folder outside the store root, an oversize or
missing file, a checksum mismatch, a bad manifest, a graph with external data or a failed
parity check, so the caller can keep serving the previous model. Where a folder may be
and how its files are read is ``streamrec.export.store_root``'s rule. No torch here.
``streamrec.export.item_table`` reads only the item ids and table of a version (what ingest adopts)
with the same checks and errors.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from streamrec.export.item_table import parse_item_table
from streamrec.export.parity import ATOL, ParityError, ParityFixture, make_session, verify_fixture
from streamrec.export.store_root import (ITEMS_FILE, MANIFEST, MODEL_FILE, PARITY_FILE, TABLE_FILE,
                               ModelRejected, read_manifest, read_verified, sha256_bytes,
                               version_folder)
from streamrec.control import BadControl, ModelAnnouncement

log = logging.getLogger(__name__)

FORMAT = "streamrec-sasrec/1"
MAX_ATOL = 1e-2  # the exporter checks 1e-4; a manifest asking for more slack is refused
REQUIRED_FILES = (MODEL_FILE, ITEMS_FILE, TABLE_FILE, PARITY_FILE)
_VERSION = re.compile(r"^v(\d{6,})$")


@dataclass(frozen=True)
class VerifiedModel:
    """Everything of a model version that passed every check, ready to serve."""

    path: Path
    manifest: dict[str, Any]
    onnx_bytes: bytes
    item_ids: list[str]
    item_table: np.ndarray
    session: ort.InferenceSession | None

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def _write(path: Path, data: bytes) -> str:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())  # the rename must not publish data still in page cache
    return sha256_bytes(data)


class ModelStore:
    """A folder of immutable, versioned model directories (``v000001``, ``v000002``, ...)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def versions(self) -> list[str]:
        """Published versions, oldest first (temporary folders are not versions)."""
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda name: int(name[1:]))

    def path(self, version: str) -> Path:
        return self.root / version

    def latest(self) -> Path | None:
        versions = self.versions()
        return self.path(versions[-1]) if versions else None

    def next_version(self) -> str:
        versions = self.versions()
        return f"v{(int(versions[-1][1:]) + 1 if versions else 1):06d}"

    def publish(self, onnx_bytes: bytes, item_ids: Sequence[str], item_table: np.ndarray,
                fixture: ParityFixture, *, model_config: Mapping[str, Any],
                exporter: str, opset: int, parent_version: str | None = None,
                data_window: Mapping[str, Any] | None = None,
                metrics: Mapping[str, Any] | None = None, version: str | None = None,
                created_at: float | None = None) -> dict[str, Any]:
        """Write a new version atomically and return its manifest.

        ``data_window`` describes the training data, e.g. ``{"topic": "clicks", "offsets":
        {"0": [0, 5120]}, "event_time": {"min": ..., "max": ...}, "events": 5120}``.
        """
        version = version or self.next_version()
        if not _VERSION.match(version):
            raise ValueError(f"version {version!r} must look like v000001")
        table = np.ascontiguousarray(item_table, dtype=np.float32)
        if table.ndim != 2 or table.shape[0] != len(item_ids) + 1:
            raise ValueError(f"item table {table.shape} must have len(item_ids) + 1 = "
                             f"{len(item_ids) + 1} rows")
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(version)
        if final.exists():
            raise FileExistsError(f"model version {version} already exists at {final}")
        tmp = self.root / f".tmp-{version}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            files = {MODEL_FILE: _write(tmp / MODEL_FILE, onnx_bytes),
                     ITEMS_FILE: _write(tmp / ITEMS_FILE, json.dumps(list(item_ids)).encode())}
            with open(tmp / TABLE_FILE, "wb") as handle:
                np.save(handle, table)
            with open(tmp / PARITY_FILE, "wb") as handle:
                np.savez(handle, **fixture.to_arrays())  # type: ignore[arg-type]
            for name in (TABLE_FILE, PARITY_FILE):
                files[name] = sha256_bytes((tmp / name).read_bytes())
            manifest: dict[str, Any] = {
                "format": FORMAT, "version": version, "parent_version": parent_version,
                "created_at": time.time() if created_at is None else created_at,
                "model": {**dict(model_config), "exporter": exporter, "opset": opset},
                "n_items": len(item_ids), "dim": int(table.shape[1]),
                "data_window": dict(data_window or {}), "metrics": dict(metrics or {}),
                "parity": {"atol": ATOL, "max_abs_diff": {
                    str(b): d for b, d in sorted(fixture.max_abs_diff.items())}},
                "files": files,
            }
            _write(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
            os.rename(tmp, final)  # atomic on one filesystem: all or nothing is visible
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return manifest


def publish_message(manifest: Mapping[str, Any], root: str | Path,
                    published_at: float | None = None) -> dict[str, Any]:
    """The ``models`` topic value for a published version (JSON-serialisable).

    ``published_at`` (epoch seconds, default now) orders announcements: with signatures on,
    a scorer takes the latest *publication*, so a replayed old message loses to a newer
    one, while re-publishing an old version (a rollback) is a new publication that wins.
    """
    path = (Path(root) / str(manifest["version"])).resolve()
    return {"version": manifest["version"], "parent_version": manifest.get("parent_version"),
            "uri": path.as_uri(), "path": str(path),
            "manifest_sha256": sha256_bytes((path / MANIFEST).read_bytes()),
            "metrics": manifest.get("metrics", {}), "created_at": manifest.get("created_at"),
            "published_at": time.time() if published_at is None else published_at}


def _locate(source: str | Path | bytes | Mapping[str, Any], root: str | Path | None
            ) -> tuple[Path, ModelAnnouncement | None]:
    """(checked version folder, announcement or None) from a path, a message or its JSON.

    A message names a version of the store at ``root``; ``root`` None takes the folder the
    message names as trusted (tools and tests: services always pass their store root).
    """
    if isinstance(source, Mapping):
        try:
            source = json.dumps(dict(source)).encode()
        except (TypeError, ValueError) as exc:
            raise ModelRejected("bad_message", f"models message: {exc}") from None
    if isinstance(source, str) and source.lstrip().startswith("{"):
        source = source.encode("utf-8", "replace")
    if isinstance(source, bytes):
        try:
            message = ModelAnnouncement.decode(source)
        except BadControl as exc:
            raise ModelRejected("bad_message", exc.detail) from None
        base = root if root is not None else Path(message.path or ".").parent
        return version_folder(base, message.version, message.path), message
    path = Path(source)
    return version_folder(path.parent if root is None else root, path.name, path), None


def load_verified(source: str | Path | bytes | Mapping[str, Any], *, check_parity: bool = True,
                  threads: int = 2, root: str | Path | None = None) -> VerifiedModel:
    """Load a model version and verify it completely, or raise ``ModelRejected``.

    Checks, in order: the version folder is inside ``root`` (``streamrec.export.store_root``); the
    manifest is there, within its size cap, parses and (for a message) matches the
    message's sha256; every listed file is within its cap and matches its sha256; the item
    list and table agree and are finite; the graph has no external data; and, unless
    ``check_parity`` is False, ONNX Runtime reproduces the stored torch outputs within the
    stored tolerance. Everything is parsed from the verified bytes, never read twice.
    """
    try:
        path, message = _locate(source, root)
    except ModelRejected as exc:
        log.warning("rejected model %s: %s (%s)", str(source)[:200], exc.detail, exc.reason)
        raise
    try:
        return _load(path, message, check_parity, threads)
    except ModelRejected as exc:
        exc.location = exc.location or str(path)
        log.warning("rejected model at %s: %s (%s)", path, exc.detail, exc.reason)
        raise


def _load(path: Path, message: ModelAnnouncement | None, check_parity: bool,
          threads: int) -> VerifiedModel:
    where = str(path)
    manifest, _ = read_manifest(path, message.manifest_sha256 if message else None)
    files = manifest["files"]
    if manifest.get("format") != FORMAT or not all(n in files for n in REQUIRED_FILES):
        raise ModelRejected("bad_manifest", f"format {str(manifest.get('format'))[:40]!r} or "
                            f"file list {sorted(files)[:10]} is not {FORMAT} with "
                            f"{REQUIRED_FILES}", where)
    model = manifest.get("model")
    if (not isinstance(model, dict) or not isinstance(model.get("max_len"), int)
            or not 0 < model["max_len"] <= 10_000):
        raise ModelRejected("bad_manifest", "model.max_len is not a positive integer", where)
    parity = manifest.get("parity", {})
    atol = parity.get("atol", ATOL) if isinstance(parity, dict) else None
    if not isinstance(atol, (int, float)) or not 0 <= atol <= MAX_ATOL:
        # A tolerance the manifest could raise at will would wave any graph through.
        raise ModelRejected("bad_manifest", f"parity.atol {str(atol)[:20]} is not a "
                            f"tolerance in [0, {MAX_ATOL}]", where)
    contents = {name: read_verified(path, manifest, name) for name in REQUIRED_FILES}
    item_ids, table = parse_item_table(contents[ITEMS_FILE], contents[TABLE_FILE], where)
    try:
        with np.load(io.BytesIO(contents[PARITY_FILE]), allow_pickle=False) as arrays:
            fixture = ParityFixture.from_arrays({k: arrays[k] for k in arrays.files})
    except Exception as exc:  # noqa: BLE001 - numpy and zipfile raise many types
        raise ModelRejected("bad_manifest", f"unreadable parity fixture: {type(exc).__name__}",
                            where) from None
    session = None
    if check_parity:
        try:
            session = make_session(contents[MODEL_FILE], threads)
            verify_fixture(session, fixture, atol)
        except ModelRejected:
            raise
        except ParityError as exc:
            raise ModelRejected("parity_failure", str(exc), where) from None
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types on a bad graph
            raise ModelRejected("parity_failure", f"ONNX Runtime cannot run the graph: "
                                f"{type(exc).__name__}: {str(exc)[:300]}", where) from None
    return VerifiedModel(path, manifest, contents[MODEL_FILE], item_ids, table, session)

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
``ModelRejected`` with a reason code on a missing file, a checksum mismatch, a bad manifest
or a failed parity check, so the caller can keep serving the previous model. No torch here.
``export.item_table`` reads only the item ids and table of a version (what ingest adopts)
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

from export.item_table import (ITEMS_FILE, MANIFEST, TABLE_FILE, ModelRejected,
                               parse_item_table, sha256_bytes)
from export.parity import ATOL, ParityError, ParityFixture, make_session, verify_fixture

log = logging.getLogger(__name__)

FORMAT = "streamrec-sasrec/1"
MODEL_FILE, PARITY_FILE = "model.onnx", "parity.npz"
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


def publish_message(manifest: Mapping[str, Any], root: str | Path) -> dict[str, Any]:
    """The ``models`` topic value for a published version (JSON-serialisable)."""
    path = (Path(root) / str(manifest["version"])).resolve()
    return {"version": manifest["version"], "parent_version": manifest.get("parent_version"),
            "uri": path.as_uri(), "path": str(path),
            "manifest_sha256": sha256_bytes((path / MANIFEST).read_bytes()),
            "metrics": manifest.get("metrics", {}), "created_at": manifest.get("created_at")}


def _locate(source: str | Path | bytes | Mapping[str, Any]) -> tuple[Path, Mapping | None]:
    """(model folder, message or None) from a path, a message dict, or message JSON."""
    if isinstance(source, bytes):
        source = source.decode("utf-8", "replace")
    if isinstance(source, str) and source.lstrip().startswith("{"):
        try:
            source = json.loads(source)
        except json.JSONDecodeError as exc:
            raise ModelRejected("bad_manifest", f"models message is not JSON: {exc}") from None
    if isinstance(source, Mapping):
        if "path" not in source or "manifest_sha256" not in source:
            raise ModelRejected("bad_manifest", "models message lacks path/manifest_sha256")
        return Path(str(source["path"])), source
    return Path(source), None  # type: ignore[arg-type]  # bytes were decoded above


def load_verified(source: str | Path | bytes | Mapping[str, Any], *, check_parity: bool = True,
                  threads: int = 2) -> VerifiedModel:
    """Load a model version and verify it completely, or raise ``ModelRejected``.

    Checks, in order: the manifest exists, parses and (for a message) matches the
    message's sha256 and version; every listed file exists and matches its sha256; the
    item list and table agree; and, unless ``check_parity`` is False, ONNX Runtime
    reproduces the stored torch outputs within the stored tolerance.
    """
    path, message = _locate(source)
    try:
        return _load(path, message, check_parity, threads)
    except ModelRejected as exc:
        exc.location = exc.location or str(path)
        log.warning("rejected model at %s: %s (%s)", path, exc.detail, exc.reason)
        raise


def _load(path: Path, message: Mapping | None, check_parity: bool,
          threads: int) -> VerifiedModel:
    where = str(path)
    try:
        raw = (path / MANIFEST).read_bytes()
    except OSError as exc:
        raise ModelRejected("missing_file", f"cannot read {MANIFEST}: {exc}", where) from None
    if message is not None and sha256_bytes(raw) != message["manifest_sha256"]:
        raise ModelRejected("checksum_mismatch", f"{MANIFEST} sha256 differs from the "
                            "models message", where)
    try:
        manifest = json.loads(raw)
        files: dict[str, str] = manifest["files"]
        version = manifest["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelRejected("bad_manifest", f"{MANIFEST} unreadable: {exc!r}", where) from None
    if manifest.get("format") != FORMAT or not all(n in files for n in REQUIRED_FILES):
        raise ModelRejected("bad_manifest", f"format {manifest.get('format')!r} or file list "
                            f"{sorted(files)} is not {FORMAT} with {REQUIRED_FILES}", where)
    if message is not None and message.get("version") not in (None, version):
        raise ModelRejected("bad_manifest", f"message says version {message.get('version')}, "
                            f"manifest says {version}", where)
    contents: dict[str, bytes] = {}
    for name, expected in files.items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise ModelRejected("bad_manifest", f"file name {name!r} leaves the folder", where)
        try:
            contents[name] = (path / name).read_bytes()
        except OSError:
            raise ModelRejected("missing_file", f"{name} is missing", where) from None
        if sha256_bytes(contents[name]) != expected:
            raise ModelRejected("checksum_mismatch", f"{name} sha256 "
                                f"{sha256_bytes(contents[name])[:12]}… != manifest "
                                f"{str(expected)[:12]}…", where)
    item_ids, table = parse_item_table(contents[ITEMS_FILE], contents[TABLE_FILE], where)
    try:
        with np.load(io.BytesIO(contents[PARITY_FILE]), allow_pickle=False) as arrays:
            fixture = ParityFixture.from_arrays({k: arrays[k] for k in arrays.files})
    except (ValueError, OSError, KeyError) as exc:
        raise ModelRejected("bad_manifest", f"unreadable model files: {exc!r}", where) from None
    session = None
    if check_parity:
        try:
            session = make_session(contents[MODEL_FILE], threads)
            verify_fixture(session, fixture, float(manifest.get("parity", {}).get("atol", ATOL)))
        except ParityError as exc:
            raise ModelRejected("parity_failure", str(exc), where) from None
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types on a bad graph
            raise ModelRejected("parity_failure", f"ONNX Runtime cannot run the graph: "
                                f"{type(exc).__name__}: {exc}", where) from None
    return VerifiedModel(path, manifest, contents[MODEL_FILE], item_ids, table, session)

"""The trust boundary of the model store: which folders count, and how their files are read.

A ``models`` or ``adopt-model`` message only *names* a version; what may be loaded is
decided here, against the store root this process was configured with
(``Settings.model_store``), never against the message:

- the version must be a version name (``v000007``), and its folder is ``root/version``: the
  message's ``path``, if any, must resolve (``Path.resolve(strict=True)``) to exactly that
  folder, so ``..``, an absolute path elsewhere or a symlink out is ``outside_store``;
- the version folder itself must not be a symlink, and files are opened relative to an
  open handle of it with ``O_NOFOLLOW``: a file symlinked out of the store is refused, and
  swapping the folder after the check cannot redirect the reads;
- every file is size-capped *before* it is read (``FILE_CAPS``: fstat, then at most cap + 1
  bytes are read, so a file growing meanwhile is refused too);
- the manifest is decoded defensively (``decode_manifest``) and gives every file's sha256.

Every failure raises ``ModelRejected(reason, detail)`` and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Mapping

MANIFEST = "manifest.json"
MODEL_FILE, ITEMS_FILE, TABLE_FILE, PARITY_FILE = (
    "model.onnx", "items.json", "item_table.npy", "parity.npz")
MiB = 1024 * 1024
# Largest file of each kind a loader reads; anything bigger is refused unread. A 1M-item
# catalogue at d = 128 is a 512 MiB table and about 20 MiB of ids.
FILE_CAPS: Mapping[str, int] = {
    MANIFEST: 1 * MiB, ITEMS_FILE: 64 * MiB, TABLE_FILE: 1024 * MiB,
    MODEL_FILE: 512 * MiB, PARITY_FILE: 64 * MiB}
_VERSION = re.compile(r"^v\d{6,12}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class ModelRejected(Exception):
    """A model that must not serve. ``reason`` is a short code, the message says why.

    Reasons: ``missing_file``, ``checksum_mismatch``, ``bad_manifest``, ``parity_failure``,
    ``outside_store``, ``bad_version``, ``too_large``, ``bad_message``, ``non_finite``,
    ``external_data``, ``bad_graph``.
    """

    def __init__(self, reason: str, detail: str, location: str = "") -> None:
        super().__init__(f"model rejected ({reason}) {location}: {detail}".replace("  ", " "))
        self.reason = reason
        self.detail = detail
        self.location = location


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_size(size: int, cap: int, name: str, where: str = "") -> None:
    if size > cap:
        raise ModelRejected("too_large", f"{name} is {size} bytes, over the cap of {cap}", where)


def version_folder(root: str | Path, version: object, claimed_path: object = None) -> Path:
    """``root/version``, checked: a version name, a real folder (no symlink) inside the root,
    and the same folder as ``claimed_path`` (the message's) when one is given."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ModelRejected("bad_version", f"{str(version)[:40]!r} is not a version name")
    try:
        base = Path(root).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise ModelRejected("missing_file", f"model store {root} is not there: {exc}") from None
    folder = base / version
    where = str(folder)
    if claimed_path is not None:
        # First: wherever the message points, it must be this very folder (after ".." and
        # symlinks are resolved), or the version is not the store's, present or not.
        try:
            claimed = Path(str(claimed_path)).resolve()
        except (OSError, RuntimeError, ValueError):
            raise ModelRejected("outside_store", f"path {str(claimed_path)[:200]!r} does not "
                                "resolve", where) from None
        if claimed != folder:
            raise ModelRejected("outside_store", f"path {str(claimed_path)[:200]!r} is not "
                                f"{version} of the store {base}", where)
    try:
        if stat.S_ISLNK(os.lstat(folder).st_mode):
            raise ModelRejected("outside_store", "the version folder is a symlink", where)
    except OSError:
        raise ModelRejected("missing_file", "no such version folder", where) from None
    return folder


def read_capped(folder: Path, name: str, cap: int | None = None) -> bytes:
    """The bytes of ``folder/name`` if it is a regular file of at most ``cap`` bytes.

    Opened with ``O_NOFOLLOW`` relative to a handle of ``folder`` (itself opened without
    following a symlink): neither a symlinked file nor a folder swapped after the checks
    redirects the read outside the store.
    """
    cap = FILE_CAPS.get(name, 64 * MiB) if cap is None else cap
    where = str(folder)
    if not _FILE_NAME.match(name):
        raise ModelRejected("bad_manifest", f"file name {name[:80]!r} leaves the folder", where)
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        folder_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | nofollow)
    except OSError as exc:
        raise ModelRejected("missing_file", f"cannot open the folder: {exc.strerror}",
                            where) from None
    try:
        fd = os.open(name, os.O_RDONLY | nofollow, dir_fd=folder_fd)
    except OSError as exc:
        reason = "outside_store" if os.path.islink(folder / name) else "missing_file"
        raise ModelRejected(reason, f"cannot open {name}: {exc.strerror}", where) from None
    finally:
        os.close(folder_fd)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ModelRejected("missing_file", f"{name} is not a regular file", where)
        check_size(info.st_size, cap, name, where)
        try:
            # One byte more than the size seen (never more than the cap): a file that grew
            # since is refused below, and no buffer is sized by the cap (read(n) allocates n).
            data = handle.read(min(info.st_size, cap) + 1)
        except (OSError, MemoryError) as exc:
            raise ModelRejected("missing_file", f"cannot read {name}: {exc!r}", where) from None
    check_size(len(data), cap, name, where)
    if len(data) != info.st_size:
        raise ModelRejected("missing_file", f"{name} changed while it was read", where)
    return data


def decode_manifest(raw: bytes, folder: str | Path = "") -> dict[str, Any]:
    """A manifest's JSON with the fields loaders rely on checked; ``ModelRejected`` only.

    ``files`` maps plain file names to sha256 hex digests; ``version`` is a version name
    and, when ``folder`` is given, that folder's name.
    """
    where = str(folder)
    check_size(len(raw), FILE_CAPS[MANIFEST], MANIFEST, where)
    try:
        manifest = json.loads(raw)
    except Exception as exc:  # noqa: BLE001 - RecursionError, UnicodeDecodeError, MemoryError
        raise ModelRejected("bad_manifest", f"{MANIFEST} is not JSON: {type(exc).__name__}",
                            where) from None
    if not isinstance(manifest, dict):
        raise ModelRejected("bad_manifest", f"{MANIFEST} is not an object", where)
    files, version = manifest.get("files"), manifest.get("version")
    if not isinstance(files, dict) or not all(
            isinstance(n, str) and _FILE_NAME.match(n) and isinstance(h, str)
            and _SHA256.match(h) for n, h in files.items()):
        raise ModelRejected("bad_manifest", "files must map plain names to sha256 digests",
                            where)
    if not isinstance(version, str) or not _VERSION.match(version) or (
            folder and Path(folder).name != version):
        raise ModelRejected("bad_manifest", f"version {str(version)[:40]!r} is not the "
                            f"folder's", where)
    return manifest


def read_manifest(folder: Path, expected_sha256: str | None = None
                  ) -> tuple[dict[str, Any], str]:
    """(decoded manifest, its sha256) of a version folder; when ``expected_sha256`` is given
    (a message pins the manifest) the bytes must match it."""
    raw = read_capped(folder, MANIFEST)
    digest = sha256_bytes(raw)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelRejected("checksum_mismatch", f"{MANIFEST} sha256 differs from the "
                            "message's", str(folder))
    return decode_manifest(raw, folder), digest


def read_verified(folder: Path, manifest: Mapping[str, Any], name: str) -> bytes:
    """A file's bytes, size-capped and checked against the manifest's sha256."""
    expected = manifest["files"].get(name)
    if expected is None:
        raise ModelRejected("bad_manifest", f"{MANIFEST} lists no {name}", str(folder))
    data = read_capped(folder, name)
    if sha256_bytes(data) != expected:
        raise ModelRejected("checksum_mismatch", f"{name} sha256 {sha256_bytes(data)[:12]}… "
                            f"!= manifest {expected[:12]}…", str(folder))
    return data

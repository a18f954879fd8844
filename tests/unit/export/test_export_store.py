"""Model store: atomic versioned folders, manifests, and rejection of anything suspicious."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamrec.export.release import publish_release
from streamrec.export.store import (ITEMS_FILE, MANIFEST, MODEL_FILE, PARITY_FILE, TABLE_FILE,
                          ModelRejected, load_verified, publish_message, sha256_bytes)


def test_publish_writes_a_complete_manifest(published) -> None:
    store, manifest = published
    assert store.versions() == ["v000001"] and store.next_version() == "v000002"
    folder = store.path("v000001")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MANIFEST, MODEL_FILE, ITEMS_FILE, TABLE_FILE, PARITY_FILE])
    for name, digest in manifest["files"].items():
        assert sha256_bytes((folder / name).read_bytes()) == digest
    assert manifest["data_window"]["offsets"] == {"0": [0, 1000]}
    assert manifest["parent_version"] is None and manifest["model"]["max_len"] == 12
    assert set(manifest["parity"]["max_abs_diff"]) == {"1", "32"}
    assert not [p for p in store.root.iterdir() if p.name.startswith(".tmp")]


def test_message_round_trip_and_lineage(published, tiny_release) -> None:
    store, first = published
    message = publish_message(first, store.root)
    assert json.loads(json.dumps(message)) == message  # a valid topic value
    verified = load_verified(json.dumps(message).encode())
    assert verified.version == "v000001" and verified.session is not None
    assert verified.item_table.shape == (31, 16)
    second = publish_release(tiny_release, store, parent_version="v000001")
    assert second["version"] == "v000002" and second["parent_version"] == "v000001"
    with pytest.raises(FileExistsError):
        publish_release(tiny_release, store, version="v000002")


@pytest.mark.parametrize("name", [MODEL_FILE, TABLE_FILE, ITEMS_FILE, PARITY_FILE])
def test_corrupted_file_is_rejected(published, name: str) -> None:
    store, manifest = published
    path = store.path("v000001") / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(data))
    with pytest.raises(ModelRejected, match=f"checksum_mismatch.*{name}") as info:
        load_verified(store.path("v000001"))
    assert info.value.reason == "checksum_mismatch"


def test_missing_file_and_bad_manifest_are_rejected(published) -> None:
    store, manifest = published
    folder = store.path("v000001")
    message = publish_message(manifest, store.root)
    (folder / TABLE_FILE).unlink()
    with pytest.raises(ModelRejected) as info:
        load_verified(folder)
    assert info.value.reason == "missing_file"
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(ModelRejected) as info:
        load_verified(folder)
    assert info.value.reason == "bad_manifest"
    with pytest.raises(ModelRejected) as info:  # the message pins the manifest's checksum
        load_verified(message)
    assert info.value.reason == "checksum_mismatch"


def test_parity_failure_is_rejected_even_with_valid_checksums(published) -> None:
    store, manifest = published
    folder = store.path("v000001")
    with np.load(folder / PARITY_FILE) as arrays:
        tampered = {k: arrays[k] + (0.01 if k.startswith("outputs") else 0) for k in arrays}
    with open(folder / PARITY_FILE, "wb") as handle:
        np.savez(handle, **tampered)
    manifest["files"][PARITY_FILE] = sha256_bytes((folder / PARITY_FILE).read_bytes())
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelRejected) as info:
        load_verified(folder)
    assert info.value.reason == "parity_failure" and "differs from torch" in str(info.value)

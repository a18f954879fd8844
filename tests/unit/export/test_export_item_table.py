"""streamrec.export.item_table: ids and vectors of a stored version, read with numpy and checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from unit.core.model_store_fakes import corrupt_table, publish_fake_model

from streamrec.export.item_table import (ITEMS_FILE, MANIFEST, TABLE_FILE, ModelRejected,
                               item_table_checksums, load_item_table)
from streamrec.export.store import load_verified

ITEMS = ["a", "b", "c"]


@pytest.fixture()
def message(tmp_path: Path) -> dict:
    return publish_fake_model(tmp_path / "models", ITEMS, dim=4, seed=1)


def test_reads_ids_and_vectors_without_the_padding_row(message: dict) -> None:
    ids, vectors = load_item_table(message["path"], item_table_checksums(message))
    stored = np.load(Path(message["path"]) / TABLE_FILE)
    assert ids == ITEMS and vectors.shape == (3, 4) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, stored[1:])
    # The full loader (without the parity run) agrees on the same files.
    verified = load_verified(message, check_parity=False)
    assert verified.item_ids == ids
    np.testing.assert_array_equal(verified.item_table[1:], vectors)


def test_checksums_come_from_the_manifest_the_message_pins(message: dict) -> None:
    sums = item_table_checksums(message)
    files = json.loads((Path(message["path"]) / MANIFEST).read_text())["files"]
    assert sums == {ITEMS_FILE: files[ITEMS_FILE], TABLE_FILE: files[TABLE_FILE]}
    with pytest.raises(ModelRejected) as info:
        item_table_checksums({**message, "manifest_sha256": "0" * 64})
    assert info.value.reason == "checksum_mismatch"


def test_a_damaged_or_missing_table_is_rejected_with_its_reason(message: dict) -> None:
    sums = item_table_checksums(message)
    with pytest.raises(ModelRejected) as info:
        load_item_table(message["path"], {ITEMS_FILE: sums[ITEMS_FILE]})
    assert info.value.reason == "bad_manifest"
    corrupt_table(message)
    with pytest.raises(ModelRejected) as info:
        load_item_table(message["path"], sums)
    assert info.value.reason == "checksum_mismatch"
    (Path(message["path"]) / TABLE_FILE).unlink()
    with pytest.raises(ModelRejected) as info:
        load_item_table(message["path"], sums)
    assert info.value.reason == "missing_file"

"""The model store's trust boundary (issue 9): root confinement, size caps, defensive
decoders and ONNX graphs with external data, without torch."""

from __future__ import annotations

import io
import json
import os
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from unit.core.model_store_fakes import publish_fake_model

from streamrec.export.item_table import decode_item_ids, decode_item_table, load_published_item_table
from streamrec.export.parity import ParityFixture, make_session
from streamrec.export.store import ModelStore, load_verified, publish_message
from streamrec.export.store_root import (FILE_CAPS, ITEMS_FILE, MANIFEST, MODEL_FILE, TABLE_FILE,
                               ModelRejected, decode_manifest, version_folder)

ITEMS = ["a", "b", "c"]


def reason(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelRejected) as info:
        call()
    return info.value.reason


def onnx_with_external_weights(folder: Path) -> bytes:
    """A MatMul graph whose weight lives in ``folder/w.bin`` (saved by the onnx package)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((4, 4), 7.0, np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(folder / "ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    return (folder / "ext.onnx").read_bytes()


def test_a_graph_with_external_data_is_refused_even_where_ort_would_load_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = onnx_with_external_weights(tmp_path)
    monkeypatch.chdir(tmp_path)  # ORT resolves a bytes model's external file against cwd
    assert ort.InferenceSession(data, providers=["CPUExecutionProvider"]) is not None
    assert reason(lambda: make_session(data, threads=1)) == "external_data"


def test_a_stored_version_with_external_data_is_rejected_by_the_loader(tmp_path: Path) -> None:
    data = onnx_with_external_weights(tmp_path)
    store = ModelStore(tmp_path / "store")
    manifest = store.publish(data, ITEMS, np.zeros((4, 2), np.float32), ParityFixture(
        inputs={1: np.zeros((1, 4), np.int64)}, outputs={1: np.zeros((1, 4), np.float32)}),
        model_config={"max_len": 4}, exporter="fake", opset=17)
    message = publish_message(manifest, store.root)
    assert reason(lambda: load_verified(message, root=store.root)) == "external_data"


def test_garbage_graph_bytes_are_refused_before_onnx_runtime_sees_them() -> None:
    assert reason(lambda: make_session(b"\x0a\xff\xff\xff", threads=1)) == "bad_graph"


def test_an_oversize_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    message = publish_fake_model(tmp_path / "store", ITEMS)
    folder = Path(message["path"])
    with open(folder / MODEL_FILE, "wb") as handle:  # sparse: no disk, no memory
        handle.truncate(FILE_CAPS[MODEL_FILE] + 1)
    with open(folder / TABLE_FILE, "r+b") as handle:
        handle.truncate(FILE_CAPS[TABLE_FILE] + 1)
    tracemalloc.start()
    try:
        assert reason(lambda: load_verified(folder, root=tmp_path / "store")) == "too_large"
        assert reason(lambda: load_published_item_table(
            tmp_path / "store", message["version"], message["manifest_sha256"])) == "too_large"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"{peak} bytes allocated: the file was read"


@pytest.mark.parametrize("where", ["dotdot", "absolute", "symlinked_folder", "symlinked_file",
                                   "bad_name"])
def test_nothing_outside_the_store_root_is_read(tmp_path: Path, where: str) -> None:
    root = tmp_path / "store"
    inside = publish_fake_model(root, ITEMS, seed=1)
    outside = publish_fake_model(tmp_path / "other", ITEMS, seed=2, version="v000007")
    version, path = "v000007", outside["path"]
    if where == "dotdot":
        path = str(root / ".." / "other" / "v000007")
    elif where == "symlinked_folder":
        os.symlink(outside["path"], root / "v000007")
        path = str(root / "v000007")
    elif where == "symlinked_file":
        version, path = inside["version"], inside["path"]
        copy = tmp_path / "items-copy.json"
        copy.write_bytes((Path(path) / ITEMS_FILE).read_bytes())  # same bytes, same sha
        (Path(path) / ITEMS_FILE).unlink()
        os.symlink(copy, Path(path) / ITEMS_FILE)
    elif where == "bad_name":
        version, path = "../other/v000007", None
    sha = inside["manifest_sha256"] if where == "symlinked_file" else outside["manifest_sha256"]
    expected = "bad_version" if where == "bad_name" else "outside_store"
    assert reason(lambda: load_published_item_table(root, version, sha, path)) == expected
    message = {**outside, "version": version, "path": path, "manifest_sha256": sha}
    assert reason(lambda: load_verified(message, root=root, check_parity=False)) in (
        expected, "bad_message")


def test_a_folder_path_argument_is_confined_to_its_root_too(tmp_path: Path) -> None:
    publish_fake_model(tmp_path / "store", ITEMS)
    assert reason(lambda: version_folder(tmp_path / "store", "v000001",
                                         tmp_path / "v000001")) == "outside_store"
    assert version_folder(tmp_path / "store", "v000001").name == "v000001"


@pytest.mark.parametrize("raw, expected", [
    (b"[" * 1000 + b"]" * 1000, "bad_manifest"),
    (b'{"files": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1001, "bad_manifest"),
    (b"\xff\xfe\x00\x00", "bad_manifest"),
    (b'{"version": "v000001", "files": {"../x": "' + b"a" * 64 + b'"}}', "bad_manifest"),
    (b'{"version": "v000001", "files": {"items.json": 5}}', "bad_manifest"),
    (b" " * (FILE_CAPS[MANIFEST] + 1), "too_large"),
])
def test_the_manifest_decoder_raises_model_rejected_only(raw: bytes, expected: str) -> None:
    assert reason(lambda: decode_manifest(raw)) == expected


def test_item_decoders_refuse_pickles_without_running_them(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (marker.write_text, ("ran",))

    buffer = io.BytesIO()
    np.save(buffer, np.array([Payload()], dtype=object), allow_pickle=True)
    assert reason(lambda: decode_item_table(buffer.getvalue(), 0)) == "bad_manifest"
    assert reason(lambda: decode_item_ids(pickle.dumps(Payload()))) == "bad_manifest"
    assert not marker.exists()


@pytest.mark.parametrize("table, expected", [
    (np.full((4, 2), np.inf, np.float32), "non_finite"),
    (np.zeros((4, 2), np.float64), "bad_manifest"),
    (np.zeros((3, 2), np.float32), "bad_manifest"),
    (np.zeros((4,), np.float32), "bad_manifest"),
])
def test_the_item_table_decoder_checks_dtype_shape_and_finiteness(table: np.ndarray,
                                                                  expected: str) -> None:
    buffer = io.BytesIO()
    np.save(buffer, table)
    assert reason(lambda: decode_item_table(buffer.getvalue(), 3)) == expected
    assert reason(lambda: decode_item_table(buffer.getvalue()[:20], 3)) == "bad_manifest"


@pytest.mark.parametrize("raw", [b'["a", "a"]', b'["a", 3]', b'{"a": 1}', b'[""]',
                                 b"[" * 5000 + b"]" * 5000, b"\xc3\x28"])
def test_the_item_ids_decoder_raises_model_rejected_only(raw: bytes) -> None:
    assert reason(lambda: decode_item_ids(raw)) == "bad_manifest"
    assert json.dumps(ITEMS)  # the good form stays a plain list
    assert decode_item_ids(json.dumps(ITEMS).encode()) == ITEMS

"""Refuse ONNX graphs that reference external data, without the ``onnx`` package.

A tensor of an ONNX model can live in a separate file (``data_location = EXTERNAL`` with a
``location`` entry). ONNX Runtime then opens that file, and for a model loaded from bytes
it resolves the location against the *working directory* (measured with onnxruntime 1.32:
``session.disable_external_initializers`` does not stop it). A hostile graph could so read
any file the process can, into weights whose outputs it controls. A streamrec graph keeps
every weight inline, so any external reference is refused before a session is built.

The serving image has no ``onnx`` (it is in the train extra), so this walks the protobuf
wire format itself, along every path that can hold a tensor: the graph's initializers and
sparse initializers, node attributes (tensors and sub-graphs, recursively) and functions.
Anything that does not parse is refused too.

>>> check_inline_weights(b"")  # an empty model holds no tensor
>>> check_inline_weights(b"\\x3a\\x03\\x2a\\x01\\x00")  # a graph whose initializer is bad
Traceback (most recent call last):
...
streamrec.export.store_root.ModelRejected: model rejected (bad_graph) : malformed protobuf: truncated
"""

from __future__ import annotations

from typing import Iterator

from streamrec.export.store_root import ModelRejected

# Field numbers of onnx.proto (stable since IR version 3).
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE = 1, 5, 15
_NODE_ATTRIBUTE = 5
_FUNCTION_NODE = 7
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
_EXTERNAL = 1
_MAX_DEPTH = 32  # nested sub-graphs (If/Loop bodies); ours have none


class _Malformed(Exception):
    pass


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("truncated")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, varint value or length-delimited bytes) of one message."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise _Malformed("truncated")
            yield number, wire, data[pos:pos + length]  # a view: no copy of big weights
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(data):
                raise _Malformed("truncated")
        else:
            raise _Malformed(f"wire type {wire}")


def _children(data: memoryview, wanted: dict[int, str]) -> Iterator[tuple[str, memoryview]]:
    for number, wire, value in _fields(data):
        if number in wanted:
            if wire != 2 or not isinstance(value, memoryview):
                raise _Malformed(f"field {number} is not a message")
            yield wanted[number], value


def _check_tensor(data: memoryview) -> None:
    for number, _wire, value in _fields(data):
        if number == _TENSOR_EXTERNAL_DATA or (number == _TENSOR_DATA_LOCATION
                                               and value == _EXTERNAL):
            raise ModelRejected("external_data", "the graph references an external data file")


def _check(kind: str, data: memoryview, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _Malformed("sub-graphs nested too deep")
    if kind == "tensor":
        _check_tensor(data)
        return
    wanted = {
        "model": {_MODEL_GRAPH: "graph", _MODEL_FUNCTIONS: "function"},
        "graph": {_GRAPH_NODE: "node", _GRAPH_INITIALIZER: "tensor", _GRAPH_SPARSE: "sparse"},
        "function": {_FUNCTION_NODE: "node"},
        "node": {_NODE_ATTRIBUTE: "attribute"},
        "attribute": {_ATTR_T: "tensor", _ATTR_G: "graph", _ATTR_TENSORS: "tensor",
                      _ATTR_GRAPHS: "graph", _ATTR_SPARSE: "sparse", _ATTR_SPARSES: "sparse"},
        "sparse": {_SPARSE_VALUES: "tensor", _SPARSE_INDICES: "tensor"},
    }[kind]
    for child_kind, child in _children(data, wanted):
        _check(child_kind, child, depth + 1)


def check_inline_weights(onnx_bytes: bytes) -> None:
    """Raise ``ModelRejected`` (``external_data`` or ``bad_graph``) unless every tensor of
    the serialised ``ModelProto`` is stored inline."""
    try:
        _check("model", memoryview(onnx_bytes), 0)
    except _Malformed as exc:
        raise ModelRejected("bad_graph", f"malformed protobuf: {exc}") from None

"""Export a ``SASRec`` to ONNX: ``item_seq`` int64 [batch, max_len] → ``user_vector`` [batch, d].

Exporter choice: the torch.export-based ("dynamo") exporter is the default since torch 2.9
and the one torch maintains; the TorchScript exporter (``dynamo=False``) is deprecated. Both
reproduce torch within 1e-6 on this model (see ``tests/unit/export``). We use dynamo first
and fall back to TorchScript only if dynamo raises, so an exporter regression costs speed
(TorchScript exports in ~0.15 s, dynamo in ~1.5 s) rather than a missing model. The graph
is pure matmuls, LayerNorm and Softmax, which every ONNX Runtime since opset 17 runs.

The opset is pinned so a torch upgrade cannot silently change what the serving runtime must
support; the batch axis is dynamic so one graph serves single requests and micro-batches.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import onnx
import torch

from streamrec.export.interface import INPUT_NAME, OPSET, OUTPUT_NAME
from streamrec.export.model import SASRec
# Largest batch the graph promises to accept; dynamo needs a bound for its symbolic shape.
MAX_BATCH = 65_536


class ExportError(RuntimeError):
    """Neither exporter produced a valid ONNX graph; the message carries both errors."""


@dataclass(frozen=True)
class ExportedModel:
    """Serialized ONNX bytes and which exporter made them (recorded in the manifest)."""

    onnx_bytes: bytes
    exporter: str
    opset: int = OPSET


def _example(model: SASRec) -> torch.Tensor:
    # Batch 2, not 1: tracers specialise a dimension whose example size is 1.
    example = torch.zeros((2, model.config.max_len), dtype=torch.int64)
    example[:, -3:] = torch.arange(1, 4).clamp(max=model.config.n_items)
    return example


def _export_dynamo(model: SASRec) -> bytes:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # The dynamo exporter logs registry chatter (e.g. missing torchvision ops) at WARNING.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    program = torch.onnx.export(model, (_example(model),), dynamo=True, opset_version=OPSET,
                                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                dynamic_shapes={INPUT_NAME: {0: batch}}, verbose=False,
                                optimize=True)
    if program is None:
        raise ExportError("dynamo exporter returned no program")
    return program.model_proto.SerializeToString()


def _export_torchscript(model: SASRec) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # we know; see module docstring
        torch.onnx.export(model, (_example(model),), buffer,  # type: ignore[arg-type]
                          dynamo=False,
                          opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return buffer.getvalue()


def export_onnx(model: SASRec, exporter: str = "auto") -> ExportedModel:
    """Export ``model`` (switched to eval mode) and check the graph with ``onnx.checker``.

    ``exporter`` is ``"auto"`` (dynamo, TorchScript on failure), ``"dynamo"`` or
    ``"torchscript"``.
    """
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ValueError(f"exporter must be auto, dynamo or torchscript, got {exporter!r}")
    model.eval()  # dropout off: the graph must be the inference function
    errors: list[str] = []
    order = {"auto": ("dynamo", "torchscript"), "dynamo": ("dynamo",),
             "torchscript": ("torchscript",)}[exporter]
    for name in order:
        try:
            with torch.no_grad():
                data = _export_dynamo(model) if name == "dynamo" else _export_torchscript(model)
            check_graph(data)
            return ExportedModel(data, name)
        except Exception as exc:  # noqa: BLE001 - any exporter failure means "try the next"
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    raise ExportError("ONNX export failed: " + " | ".join(errors))


def check_graph(onnx_bytes: bytes) -> None:
    """``onnx.checker`` plus our interface: one int64 input and one float output, named."""
    proto = onnx.load_from_string(onnx_bytes)
    onnx.checker.check_model(proto)
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportError(f"graph interface is {inputs} -> {outputs}, "
                          f"expected [{INPUT_NAME!r}] -> [{OUTPUT_NAME!r}]")


def retrieval_graph() -> bytes:
    """The scoring graph serving embeds (``streamrec.export.interface.RETRIEVAL_GRAPH_B64``)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["user_vector", "item_table"], ["scores"], transB=1)],
        "retrieval",
        [helper.make_tensor_value_info("user_vector", TensorProto.FLOAT, ["batch", "dim"]),
         helper.make_tensor_value_info("item_table", TensorProto.FLOAT, ["items", "dim"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "items"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="streamrec")
    model.ir_version = 8  # readable by every ONNX Runtime we support
    onnx.checker.check_model(model)
    return model.SerializeToString()

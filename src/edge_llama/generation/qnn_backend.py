"""Runs an exported QNN folder's context binaries on the x86 HTP simulator, one graph call at a time.

The parts of one AR are chained: each part's outputs (`hidden_states_*`, its layers' KV) feed the
parts after it, exactly as a device runs them. Every node runs on the HTP backend; CPU fallback is
disabled, so nothing quietly runs in float. Graphs with Genie's integer I/O (`genie.to_genie_io`)
get their inputs quantized and their outputs dequantized here, with the scale and offset of
metadata.json, as Genie does on the device; float-I/O bundles of earlier exports run as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..configuration_edge_llama import EdgeLlamaConfig
from ..serialization.safety import contained_file, read_json
from ..export.genie import GENIE_INPUT_NAMES
from .backends import GraphCall, GraphResult


class QnnContextBackend:
    """A `GraphBackend` over the context binaries of `export(target="qnn")`."""

    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, folder: str | os.PathLike):
        import onnxruntime as ort

        from ..export.qnn import METADATA_FILE, qnn_session_options
        from ..presets import find_device

        self.folder = Path(folder)
        self.config = EdgeLlamaConfig.from_pretrained(self.folder)
        metadata = read_json(contained_file(self.folder, METADATA_FILE, "metadata"))
        device = find_device(metadata["device"]["name"])
        self.description = f"QNN context binaries for {device.name} ({device.chipset}) · x86 HTP simulator"
        self.sessions: dict[int, list] = {}
        self.io: dict[int, list[dict]] = {}  # per AR, per part: each I/O's metadata (dtype, scale, offset) by name
        for graph in metadata["graphs"]:  # in call order: parts 1 … N of each AR
            context = contained_file(self.folder, graph["context_file"], "context graph")
            _check_binary_names(self.folder, context)
            session = ort.InferenceSession(str(context), sess_options=qnn_session_options(device))
            self.sessions.setdefault(graph["ar_length"], []).append(session)
            self.io.setdefault(graph["ar_length"], []).append({v["name"]: v for v in (*graph.get("inputs", ()), *graph.get("outputs", ()))})

    def __call__(self, call: GraphCall) -> GraphResult:
        tensors = {
            "input_ids": call.input_ids, "attention_mask": call.attention_mask,
            "position_cos": call.position_cos, "position_sin": call.position_sin,
        }
        for layer, (key, value) in enumerate(zip(call.past_keys, call.past_values)):
            tensors[f"past_key_{layer}_in"], tensors[f"past_value_{layer}_in"] = key, value
        arrays = {name: np.ascontiguousarray(tensor.numpy()) for name, tensor in tensors.items()}
        arrays.update({genie: arrays[name] for name, genie in GENIE_INPUT_NAMES.items()})  # Genie's input names
        for session, io in zip(self.sessions[call.ar_length], self.io[call.ar_length]):
            # The binaries take and return Genie's integer tensors; the host quantizes them as Genie does.
            feeds = {value.name: _to_graph(arrays[value.name], value.type, io.get(value.name)) for value in session.get_inputs()}
            names = [value.name for value in session.get_outputs()]
            arrays.update((name, _from_graph(array, io.get(name))) for name, array in zip(names, session.run(names, feeds)))
        layers = range(self.config.num_hidden_layers)
        return GraphResult(
            logits=torch.from_numpy(arrays["logits"]),
            keys_out=[torch.from_numpy(arrays[f"past_key_{l}_out"]) for l in layers],
            values_out=[torch.from_numpy(arrays[f"past_value_{l}_out"]) for l in layers],
        )


def _to_graph(array: np.ndarray, onnx_type: str, io: dict | None) -> np.ndarray:
    """A host tensor as the graph input of type `onnx_type` (`tensor(uint16)`, …) takes it."""
    dtype = np.dtype({"float": "float32", "double": "float64"}.get(onnx_type[7:-1], onnx_type[7:-1]))
    if dtype.kind != "f" and io is not None and "quantization" in io and array.dtype.kind == "f":
        q, info = io["quantization"], np.iinfo(dtype)
        return np.clip(np.rint(array / q["scale"]) - q["offset"], info.min, info.max).astype(dtype)
    return array if array.dtype == dtype else array.astype(dtype)


def _from_graph(array: np.ndarray, io: dict | None) -> np.ndarray:
    if array.dtype.kind == "f" or io is None or "quantization" not in io:
        return array
    q = io["quantization"]
    return ((array.astype(np.float32) + q["offset"]) * q["scale"]).astype(np.float32)


def _check_binary_names(folder: Path, context: Path) -> None:
    """The binaries an `_ctx.onnx` graph makes onnxruntime load must lie inside the folder too."""
    import onnx

    graph = onnx.load(str(context), load_external_data=False).graph
    for node in graph.node:
        attributes = {attribute.name: attribute for attribute in node.attribute}
        embedded = attributes["embed_mode"].i if "embed_mode" in attributes else 1
        if node.op_type == "EPContext" and not embedded and "ep_cache_context" in attributes:  # a file name, not the bytes
            name = attributes["ep_cache_context"].s.decode(errors="replace")
            contained_file(folder, name, f"context binary of {context.name}")

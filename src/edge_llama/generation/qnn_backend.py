"""Runs an exported QNN folder's context binaries on the x86 HTP simulator, one graph call at a time.

The parts of one AR are chained: each part's outputs (`hidden_states_*`, its layers' KV) feed the
parts after it, exactly as a device runs them. Every node runs on the HTP backend; CPU fallback is
disabled, so nothing quietly runs in float.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..configuration_edge_llama import EdgeLlamaConfig
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
        metadata = json.loads((self.folder / METADATA_FILE).read_text())
        device = find_device(metadata["device"]["name"])
        self.description = f"QNN context binaries for {device.name} ({device.chipset}) · x86 HTP simulator"
        self.sessions: dict[int, list] = {}
        for graph in metadata["graphs"]:  # in call order: parts 1 … N of each AR
            session = ort.InferenceSession(str(self.folder / graph["context_file"]), sess_options=qnn_session_options(device))
            self.sessions.setdefault(graph["ar_length"], []).append(session)

    def __call__(self, call: GraphCall) -> GraphResult:
        tensors = {
            "input_ids": call.input_ids, "attention_mask": call.attention_mask,
            "position_cos": call.position_cos, "position_sin": call.position_sin,
        }
        for layer, (key, value) in enumerate(zip(call.past_keys, call.past_values)):
            tensors[f"past_key_{layer}_in"], tensors[f"past_value_{layer}_in"] = key, value
        arrays = {name: np.ascontiguousarray(tensor.numpy()) for name, tensor in tensors.items()}
        for session in self.sessions[call.ar_length]:
            feeds = {value.name: arrays[value.name] for value in session.get_inputs()}
            names = [value.name for value in session.get_outputs()]
            arrays.update(zip(names, session.run(names, feeds)))
        layers = range(self.config.num_hidden_layers)
        return GraphResult(
            logits=torch.from_numpy(arrays["logits"]),
            keys_out=[torch.from_numpy(arrays[f"past_key_{l}_out"]) for l in layers],
            values_out=[torch.from_numpy(arrays[f"past_value_{l}_out"]) for l in layers],
        )

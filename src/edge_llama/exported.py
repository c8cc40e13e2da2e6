"""Exported folders as models: `from_pretrained(<export folder>)` runs the exported graphs.

The returned model is an `EdgeLlamaForCausalLM` without weights in PyTorch (they live in the
exported files): its runner drives a backend that executes the export (the QNN context binaries on
the HTP simulator, an ExecuTorch program, the onnx-int4 decoder in onnxruntime), so `forward`,
`generate`, `edge-llama evaluate` and `demo` measure the export itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import UnsupportedCheckpointError
from .modeling_edge_llama import EdgeLlamaForCausalLM


class ExportedEdgeLlamaForCausalLM(EdgeLlamaForCausalLM):
    """An edge model whose graph calls run in an exported artifact, not in PyTorch."""

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # where the backend takes and returns tensors; the modules are empty

    def graph_forward(self, *args, **kwargs):
        raise NotImplementedError("an exported model has no PyTorch graph; it runs through model.runner")


def export_target(config) -> str | None:
    export = getattr(config, "edge_llama_export", None)
    return export.get("target") if isinstance(export, dict) else None


def load_exported(folder: str | os.PathLike, config) -> ExportedEdgeLlamaForCausalLM:
    from .generation import EdgeRunner
    from .generation.program_runner import ProgramRunner

    target = export_target(config)
    if target == "qnn":
        from .generation.qnn_backend import QnnContextBackend

        backend, runner = QnnContextBackend(folder), EdgeRunner
    elif target == "executorch":
        from .generation.executorch_backend import ExecuTorchBackend

        backend, runner = ExecuTorchBackend(folder), ProgramRunner
    elif target == "onnx-int4":
        from .generation.ort_backend import OrtInt4Backend

        backend, runner = OrtInt4Backend(folder), ProgramRunner
    else:
        raise UnsupportedCheckpointError(
            f"{folder} is an export for {target!r}, which edge-llama cannot run on this machine; "
            "load the checkpoint it was exported from instead."
        )
    with torch.device("meta"):
        model = ExportedEdgeLlamaForCausalLM(backend.config)
    model._runner = runner(backend)
    model.name_or_path = str(folder)
    generation_config = Path(folder) / "generation_config.json"
    if generation_config.is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(folder)
    return model.eval()

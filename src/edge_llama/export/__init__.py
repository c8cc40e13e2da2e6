"""Export targets, one module each, behind one registry.

| target | module | produces |
|---|---|---|
| `onnx` | `onnx_parts` | per-part ONNX graphs (prompt and token AR) + one `model.data` + per-part encodings: AI Hub's upload form |
| `qnn` | `qnn` | per-part × AR QNN context binaries for one SoC, compiled locally; they run on the x86 HTP simulator |
| `executorch` | `executorch` | an XNNPACK `.pte` with the KV cache inside (float or `8da4w`); runs in `executorch.runtime` |
| `onnx-int4` | `onnx_int4` | one ONNX decoder with int4 `MatMulNBits` weights (float, `w4-awq`, `w4-rtn`), KV cache as I/O, `genai_config.json`: ORT GenAI / Ryzen AI form |

More targets (`qnn`, `qai-hub`, `executorch`, `onnx-int4`) join as they land.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import atomic_directory
from ..errors import EdgeLlamaError

if TYPE_CHECKING:
    from ..modeling_edge_llama import EdgeLlamaForCausalLM

TARGETS = {
    "onnx": "edge_llama.export.onnx_parts:export_onnx_parts",
    "qnn": "edge_llama.export.qnn:export_qnn",
    "executorch": "edge_llama.export.executorch:export_executorch",
    "onnx-int4": "edge_llama.export.onnx_int4:export_onnx_int4",
}


class ExportError(EdgeLlamaError, ValueError):
    """An unknown export target or settings it cannot use."""


def export_function(target: str):
    """The function registered for `target`: `export(model, output_dir, **options)`."""
    if target not in TARGETS:
        raise ExportError(f"unknown export target {target!r}; available: {', '.join(TARGETS)}")
    module_name, function_name = TARGETS[target].split(":")
    return getattr(importlib.import_module(module_name), function_name)


def export_model(model: EdgeLlamaForCausalLM, target: str, output_dir: str | os.PathLike, **options) -> Path:
    """Writes `model` for `target` into `output_dir` atomically (a staging folder renamed at the end)."""
    export = export_function(target)
    with atomic_directory(output_dir) as staging:
        export(model, staging, **options)
    return Path(output_dir)

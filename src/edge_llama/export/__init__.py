"""Export targets, one module each, behind one registry.

| target | module | produces |
|---|---|---|
| `onnx` | `onnx_parts` | per-part ONNX graphs (prompt and token AR) + one `model.data` + per-part encodings: AI Hub's upload form |
| `qnn` | `qnn` | per-part × AR QNN context binaries for one SoC, compiled locally; they run on the x86 HTP simulator |
| `qai-hub` | `qai_hub` | the `onnx` parts compiled and linked by Qualcomm AI Hub (needs an API token), + a Genie bundle |
| `executorch` | `executorch` | an XNNPACK `.pte` with the KV cache inside (float or `8da4w`); runs in `executorch.runtime` |
| `onnx-int4` | `onnx_int4` | one ONNX decoder with int4 `MatMulNBits` weights (float, `w4-awq`, `w4-rtn`), KV cache as I/O, `genai_config.json`: ORT GenAI / Ryzen AI form |
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
    "qai-hub": "edge_llama.export.qai_hub:export_qai_hub",
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


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuses to replace an existing, non-empty `output_dir` unless `overwrite`."""
    output = Path(output_dir)
    if output.exists() and not overwrite and (not output.is_dir() or any(output.iterdir())):
        raise ExportError(
            f"{output} already exists and is not empty; export to a new folder, or pass overwrite=True "
            "(edge-llama export --overwrite) to replace it once the new export is complete"
        )


def export_model(
    model: EdgeLlamaForCausalLM, target: str, output_dir: str | os.PathLike, overwrite: bool = False, **options
) -> Path:
    """Writes `model` for `target` into `output_dir` atomically (a staging folder renamed at the end).

    A non-empty `output_dir` is only replaced with `overwrite=True`, and then only once the new export is complete.
    """
    export = export_function(target)
    check_output_dir(output_dir, overwrite)
    with atomic_directory(output_dir) as staging:
        export(model, staging, **options)
    return Path(output_dir)


def package_version(package: str) -> str | None:
    """The installed version of `package` (recorded in exported configs), or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None

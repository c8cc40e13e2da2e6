"""`export(target="qnn", device=...)`: QNN context binaries for one SoC, compiled on this machine.

No cloud: onnxruntime-qnn's HTP backend (the QNN SDK inside the wheel) compiles each part × AR
graph in its QDQ form (`qdq.py`, from the part's AIMET encodings) into a context binary for the
device's SoC, and the x86 HTP simulator in the same wheel runs it — so `edge-llama evaluate` and
`demo` measure what the NPU computes before anything ships.

```
part_1_of_2_ar128_cl4096_ctx.onnx + part_1_of_2_ar128_cl4096_ctx_qnn.bin   one per part × AR
…
metadata.json        device, graphs in call order, each graph's QNN name and I/O (dtype, scale, offset)
config.json          the model; `edge_llama_export` = {target: qnn, device, recipe}
tokenizer files, generation_config.json
```

Each binary holds one graph; prompt and token graphs do not share weights here because shared
binaries do not load on the x86 simulator (docs/internals/qnn-local-compile.md). QNN names the
graphs itself (`QNNExecutionProvider_…`); metadata.json maps them to Genie's
`prompt_ar128_cl4096_1_of_2` / `token_ar1_cl4096_1_of_2` names.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EdgeLlamaError
from ..presets import DevicePreset, find_device
from ..quantization.encodings import Encodings

if TYPE_CHECKING:
    from ..modeling_edge_llama import EdgeLlamaForCausalLM

QNN_PACKAGE = "onnxruntime-qnn==2.7.0"
DEFAULT_DEVICE = "Snapdragon 8 Gen 3"
METADATA_FILE = "metadata.json"


class QnnExportError(EdgeLlamaError, RuntimeError):
    """The model cannot be compiled for QNN, or onnxruntime-qnn is missing."""


def genie_graph_name(ar_length: int, context_length: int, part_index: int, num_parts: int) -> str:
    kind = "prompt" if ar_length > 1 else "token"
    return f"{kind}_ar{ar_length}_cl{context_length}_{part_index}_of_{num_parts}"


def qnn_session_options(device: DevicePreset, extra: dict[str, str] | None = None):
    """Session options that put every node on the HTP backend for `device` (never the CPU)."""
    try:
        import onnxruntime as ort
        import onnxruntime_qnn
    except ImportError as error:
        raise QnnExportError(
            f"QNN export and simulation need {QNN_PACKAGE}: pip install 'edge-llama[qnn]' (or pip install {QNN_PACKAGE})"
        ) from error
    if "QNNExecutionProvider" not in {d.ep_name for d in ort.get_ep_devices()}:
        ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
    devices = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Without this, an unsupported node or a bad option silently runs on the CPU instead.
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    for key, value in (extra or {}).items():
        options.add_session_config_entry(key, value)
    options.add_provider_for_devices(devices, {
        "backend_type": "htp",
        "soc_model": str(device.soc_model),
        "htp_arch": device.htp_arch.lstrip("v"),
        "offload_graph_io_quantization": "0",  # float I/O; the Q/DQ of the graph I/O stay in the binary
    })
    return options


def export_qnn(
    model: EdgeLlamaForCausalLM, output_dir: str | os.PathLike, device: str = DEFAULT_DEVICE, parts: int | None = None
) -> list[Path]:
    """Compiles every part × AR graph of a QNN-quantized model into context binaries in `output_dir`."""
    import onnxruntime as ort

    from .onnx_parts import export_onnx_parts
    from .qdq import to_qdq

    preset = find_device(device)
    if model.quantization is None or model.quantization.recipe.target != "qnn":
        found = "a float model" if model.quantization is None else f"recipe {model.quantization.recipe.name}"
        raise QnnExportError(
            f"the qnn target compiles a model quantized with a QNN recipe (w4a16, w4a16-lpbq, w8a16); got {found}. "
            "Quantize it first: model.quantize('w4a16')."
        )
    output_dir = Path(output_dir)
    graphs = []
    with tempfile.TemporaryDirectory(prefix="edge_llama_qnn_") as scratch:
        scratch = Path(scratch)
        export_onnx_parts(model, scratch, parts=parts)
        config = json.loads((scratch / "config.json").read_text())
        num_parts, context_length = config["num_parts"], config["context_length"]
        for ar in config["ar_lengths"]:
            for index in range(1, num_parts + 1):
                part = f"part_{index}_of_{num_parts}"
                stem = f"{part}_ar{ar}_cl{context_length}"
                encodings = Encodings.read(scratch / f"{part}.encodings")
                qdq = to_qdq(scratch / f"{stem}.onnx", encodings, scratch / f"{stem}_qdq.onnx")
                context = output_dir / f"{stem}_ctx.onnx"
                started = time.perf_counter()
                options = qnn_session_options(preset, {
                    "ep.context_enable": "1",
                    "ep.context_file_path": str(context.resolve()),
                    "ep.context_embed_mode": "0",
                })
                try:
                    ort.InferenceSession(str(qdq), sess_options=options)
                except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types
                    raise QnnExportError(f"QNN could not compile {stem} for {preset.name}: {error}") from error
                graphs.append(_graph_entry(context, stem, part, index, num_parts, ar, context_length, encodings, time.perf_counter() - started))
        # Config, generation config and tokenizer files come along; the float graphs stay behind.
        for path in scratch.iterdir():
            if path.is_file() and path.suffix not in (".onnx", ".data", ".encodings"):
                (output_dir / path.name).write_bytes(path.read_bytes())
    config["edge_llama_export"] = {**config.get("edge_llama_export", {}), "target": "qnn", "device": preset.name}
    (output_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metadata = {
        "device": {"name": preset.name, "chipset": preset.chipset, "soc_model": preset.soc_model, "htp_arch": preset.htp_arch},
        "num_parts": num_parts, "context_length": context_length, "ar_lengths": config["ar_lengths"], "graphs": graphs,
    }
    (output_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return [output_dir / graph["context_file"] for graph in graphs]


def _graph_entry(context: Path, stem, part, index, num_parts, ar, context_length, encodings: Encodings, seconds) -> dict:
    import onnx

    graph = onnx.load(str(context), load_external_data=False).graph
    node = graph.node[0]  # the one EPContext node
    binary = next((a.s.decode() for a in node.attribute if a.name == "ep_cache_context"), None)

    def io(values):
        entries = []
        for value in values:
            encoding = encodings.activations.get(value.name)
            entry = {"name": value.name, "dtype": onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()}
            if encoding is not None:
                entry["quantization"] = {"bw": encoding.bw, "is_sym": encoding.is_sym, "scale": encoding.scale[0], "offset": encoding.offset[0]}
            entries.append(entry)
        return entries

    return {
        "genie_name": genie_graph_name(ar, context_length, index, num_parts),
        "qnn_graph_name": node.name,
        "part": part,
        "ar_length": ar,
        "context_file": context.name,
        "binary_file": binary,
        "inputs": io(graph.input),
        "outputs": io(graph.output),
        "compile_seconds": round(seconds, 2),
    }

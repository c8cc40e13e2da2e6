"""`export(target="qnn", device=...)`: QNN context binaries for one SoC, compiled on this machine, and a Genie bundle.

No cloud: onnxruntime-qnn's HTP backend (the QNN SDK inside the wheel) compiles each part × AR
graph in its QDQ form (`qdq.py`, from the part's AIMET encodings) into a context binary for the
device's SoC, and the x86 HTP simulator in the same wheel runs it — so `edge-llama evaluate` and
`demo` measure what the NPU computes before anything ships.

```
<model>_part_1_of_2.bin …        Genie's binaries: one context per part, prompt + token graph, weights shared
part_1_of_2_ar128_cl4096_ctx.onnx + _ctx_qnn.bin   the same graphs one per binary, for the simulator
…
genie_config.json  htp_backend_ext_config.json  tokenizer.json  README.md   (genie.py)
metadata.json        device, graphs in call order, each graph's QNN name and I/O (dtype, scale, offset)
config.json          the model; `edge_llama_export` = {target: qnn, device, recipe}
generation_config.json, tokenizer files
```

Every graph takes and returns what Genie feeds (`genie.to_genie_io`): integer tensors named
`input_ids`, `attention_mask`, `position_ids_cos`, … whose scale and offset metadata.json records;
the simulator backend quantizes and dequantizes on the host the way Genie does. Weight-shared
binaries do not load on the x86 simulator (docs/internals/qnn-local-compile.md), so the per-part
binaries are compiled from the very graphs the simulator checks, but only those are run here. QNN
names graphs itself (`QNNExecutionProvider_…`); Genie finds AR and CL from the I/O shapes, and
metadata.json maps each QNN name to `prompt_ar128_cl4096_1_of_2` / `token_ar1_cl4096_1_of_2`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EdgeLlamaError
from ..presets import DevicePreset, find_device
from ..quantization.encodings import Encodings

if TYPE_CHECKING:
    from ..modeling_edge_llama import EdgeLlamaForCausalLM

logger = logging.getLogger(__name__)

QNN_PACKAGE = "onnxruntime-qnn==2.7.0"
QNN_SDK_VERSION = "2.51"  # the QNN SDK inside onnxruntime-qnn 2.7.0 (EPContext ep_sdk_version v2.51.0)
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
        "offload_graph_io_quantization": "0",  # the graph I/O is already integer (genie.to_genie_io)
    })
    return options


def export_qnn(
    model: EdgeLlamaForCausalLM,
    output_dir: str | os.PathLike,
    device: str = DEFAULT_DEVICE,
    parts: int | None = None,
    tokenizer=None,
    weight_sharing: bool | None = None,
    skip_inferencing: bool = False,
    int4_as_int8: bool = False,
) -> list[Path]:
    """Compiles every part × AR graph of a QNN-quantized model into context binaries and a Genie bundle.

    `weight_sharing` (default: the device preset's) also writes Genie's per-part binaries
    `<model>_part_i_of_N.bin`; `tokenizer` is saved into the bundle when the model has none of its
    own; unless `skip_inferencing`, one token goes through the compiled token graphs on the HTP
    simulator and is compared with the host simulation (metadata.json `simulator_check`).
    `int4_as_int8` stores 4-bit projection weights as int8 codes × 16 (the same values): HTP computes
    16-bit-activation convolutions in units of 256 input × weight steps, which costs int4 weights
    ~13 dB of logits SQNR on 12 SmolLM2 layers; widened, the weights take twice the bytes
    (export/qdq.py, docs/export.md).

    ```python
    >>> model.quantize("w4a16").export("qnn", "smollm2-qnn", device="Snapdragon 8 Elite", parts=2)
    ```
    """
    import onnxruntime as ort
    from tqdm.auto import tqdm

    from .genie import genie_binary_name, to_genie_io, validate_bundle, write_genie_files
    from .onnx_parts import export_onnx_parts
    from .qdq import to_qdq

    preset = find_device(device)
    check_quantized(model, preset)
    tokenizer = bundle_tokenizer(model, tokenizer)
    weight_sharing = preset.weight_sharing if weight_sharing is None else weight_sharing
    if weight_sharing and not preset.weight_sharing:
        raise QnnExportError(f"{preset.name} does not support weight sharing (configs/devices); export with weight_sharing=False")
    output_dir = Path(output_dir)
    model_name = bundle_prefix(model)
    graphs, genie_binaries = [], []
    with tempfile.TemporaryDirectory(prefix="edge_llama_qnn_") as scratch:
        scratch = Path(scratch)
        export_onnx_parts(model, scratch, parts=parts)
        config = json.loads((scratch / "config.json").read_text())
        num_parts, context_length, ar_lengths = config["num_parts"], config["context_length"], config["ar_lengths"]
        encodings = {i: Encodings.read(scratch / f"part_{i}_of_{num_parts}.encodings") for i in range(1, num_parts + 1)}
        check_graph_sizes(
            {f"part_{i}_of_{num_parts}_ar{ar}_cl{context_length}": part_weight_bytes(scratch / f"part_{i}_of_{num_parts}_ar{ar}_cl{context_length}.onnx", encodings[i], int4_as_int8)
             for i in encodings for ar in ar_lengths},
            preset, num_parts,
        )
        if not int4_as_int8 and any(e.stored_bits == 4 for part in encodings.values() for e in part.params.values()):
            logger.info("4-bit weights go to HTP as int4, which agrees less with the host simulation (whole SmolLM2 "
                        "w4a16: 76 %% top-1, 10 %% more perplexity); int4_as_int8=True (--int4-as-int8) keeps the "
                        "host's quality at twice the weight bytes (docs/export.md)")
        genie_graphs: dict[tuple[int, int], tuple[Path, dict]] = {}
        jobs = [(ar, index) for ar in ar_lengths for index in range(1, num_parts + 1)]
        for ar, index in tqdm(jobs, desc=f"QNN compile for {preset.name}", unit="graph", disable=None):
            part = f"part_{index}_of_{num_parts}"
            stem = f"{part}_ar{ar}_cl{context_length}"
            qdq = to_qdq(scratch / f"{stem}.onnx", encodings[index], scratch / f"{stem}_qdq.onnx", int4_as_int8=int4_as_int8)
            genie_form = scratch / f"{stem}_genie.onnx"
            quantization = to_genie_io(qdq, genie_form)
            genie_graphs[(index, ar)] = (genie_form, quantization)
            context = output_dir / f"{stem}_ctx.onnx"
            started = time.perf_counter()
            _compile(ort, genie_form, preset, context, stem)
            graphs.append(_graph_entry(context, part, index, num_parts, ar, context_length, quantization, time.perf_counter() - started))
        if weight_sharing:
            for index in tqdm(range(1, num_parts + 1), desc="Genie per-part binaries", unit="part", disable=None):
                genie_binaries.append(_compile_shared_part(ort, genie_graphs, index, num_parts, ar_lengths, context_length, preset, scratch, output_dir / genie_binary_name(model_name, index, num_parts)))
        # Config, generation config and tokenizer files come along; the float graphs stay behind.
        for path in scratch.iterdir():
            if path.is_file() and path.suffix not in (".onnx", ".data", ".encodings"):
                shutil.copyfile(path, output_dir / path.name)
    tokenizer.save_pretrained(output_dir)
    config["edge_llama_export"] = {**config.get("edge_llama_export", {}), "target": "qnn", "device": preset.name}
    (output_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metadata = {
        "device": {"name": preset.name, "chipset": preset.chipset, "soc_model": preset.soc_model, "htp_arch": preset.htp_arch},
        "qnn_sdk": QNN_SDK_VERSION, "num_parts": num_parts, "context_length": context_length, "ar_lengths": ar_lengths,
        "num_layers": config["num_hidden_layers"], "kv_dim": config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"],
        "weight_sharing": weight_sharing, "int4_as_int8": int4_as_int8, "graphs": graphs, "genie_binaries": genie_binaries,
    }
    (output_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    # Without weight sharing Genie gets every graph's own binary, part by part.
    ctx_bins = [e["file"] for e in genie_binaries] or [g["binary_file"] for g in sorted(graphs, key=lambda g: (g["part"], -g["ar_length"]))]
    write_genie_files(output_dir, preset, ctx_bins, weight_sharing, QNN_SDK_VERSION)
    validate_bundle(output_dir)
    if not skip_inferencing:
        metadata["simulator_check"] = simulator_check(model, output_dir)
        (output_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return [output_dir / graph["context_file"] for graph in graphs]


def check_quantized(model: EdgeLlamaForCausalLM, preset: DevicePreset) -> None:
    if model.quantization is not None and model.quantization.recipe.target == "qnn":
        recipe = model.quantization.recipe
        if recipe.activations.residual_stream == "float16" and not preset.fp16:
            raise QnnExportError(
                f"recipe {recipe.name} keeps the residual stream in fp16, which {preset.name} ({preset.htp_arch}) cannot run; "
                "pick a device with fp16 HTP support (configs/devices), or quantize with a recipe whose "
                "activations have residual_stream: integer."
            )
        return
    found = "a float model" if model.quantization is None else f"recipe {model.quantization.recipe.name} (for {model.quantization.recipe.target})"
    fp16 = (
        f" {preset.name} also runs fp16 graphs, but edge-llama does not compile float models for HTP yet."
        if preset.fp16 else f" {preset.name} has no fp16 HTP support, so it needs an integer model."
    )
    raise QnnExportError(
        f"the qnn target compiles a checkpoint quantized with a QNN recipe (w4a16, w4a16-lpbq, w8a16); got {found}. "
        f"Quantize it first: model.quantize('w4a16') or `edge-llama export --recipe w4a16 …`.{fp16}"
    )


def bundle_tokenizer(model: EdgeLlamaForCausalLM, tokenizer=None):
    """The tokenizer a Genie bundle ships (Genie needs its tokenizer.json): `tokenizer`, else the model's own."""
    from ..checkpoints import load_tokenizer

    if tokenizer is not None:
        return tokenizer
    try:
        tokenizer = load_tokenizer(model.name_or_path) if model.name_or_path else None
    except EdgeLlamaError:
        tokenizer = None
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        raise QnnExportError(
            f"the Genie bundle needs a tokenizer.json, and {model.name_or_path or 'this model'} has no (fast) tokenizer "
            "of its own (a model built in memory?); pass one: model.export(..., tokenizer=load_tokenizer('DEFAULT'))"
        )
    return tokenizer


def bundle_prefix(model: EdgeLlamaForCausalLM) -> str:
    """The bundle's file prefix: the checkpoint's folder name, else the model type."""
    name = Path(str(model.name_or_path or "")).name or model.config.model_type
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "edge_llama"


def _compile(ort, graph: Path, preset: DevicePreset, context: Path, stem: str, share: dict | None = None) -> None:
    options = qnn_session_options(preset, {
        "ep.context_enable": "1",
        "ep.context_file_path": str(context.resolve()),
        "ep.context_embed_mode": "0",
        **(share or {}),
    })
    try:
        ort.InferenceSession(str(graph), sess_options=options)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types
        raise QnnExportError(f"QNN could not compile {stem} for {preset.name}: {error}") from error


def _compile_shared_part(ort, genie_graphs, index, num_parts, ar_lengths, context_length, preset, scratch: Path, binary: Path) -> dict:
    """One context holding every AR graph of part `index`, weights stored once (Genie's `ctx-bins` entry)."""
    import onnx

    shared = scratch / f"shared_{index}"
    shared.mkdir()
    names = []
    for position, ar in enumerate(ar_lengths):
        graph, _ = genie_graphs[(index, ar)]
        context = shared / f"ar{ar}_ctx.onnx"
        last = position == len(ar_lengths) - 1
        _compile(ort, graph, preset, context, f"part {index} (weight-shared)", {"ep.share_ep_contexts": "1", **({"ep.stop_share_ep_contexts": "1"} if last else {})})
        node = onnx.load(str(context), load_external_data=False).graph.node[0]
        names.append({"genie_name": genie_graph_name(ar, context_length, index, num_parts), "qnn_graph_name": node.name})
    binaries = list(shared.glob("*.bin"))
    if len(binaries) != 1:
        raise QnnExportError(f"weight-shared compile of part {index} wrote {len(binaries)} binaries, expected 1: {[b.name for b in binaries]}")
    shutil.move(str(binaries[0]), binary)
    return {"file": binary.name, "part": f"part_{index}_of_{num_parts}", "graphs": names, "bytes": binary.stat().st_size}


def part_weight_bytes(graph_path: str | os.PathLike, encodings: Encodings, int4_as_int8: bool = False) -> int:
    """Bytes of weights a part's graph holds on the device: each initializer at its encoded width (float:
    4 bytes; 4-bit ones at 8 bits with `int4_as_int8`, an upper bound: embedding tables stay 4-bit)."""
    import onnx

    total = 0
    for tensor in onnx.load(str(graph_path), load_external_data=False).graph.initializer:
        encoding = encodings.params.get(tensor.name)
        bits = 32 if encoding is None else encoding.stored_bits
        if int4_as_int8 and bits == 4:
            bits = 8
        total += math.prod(tensor.dims) * bits // 8
    return total


def check_graph_sizes(sizes: dict[str, int], preset: DevicePreset, num_parts: int) -> None:
    """Refuses graphs whose weights exceed the device's graph size limit (`max_graph_bytes` in configs/devices)."""
    if preset.max_graph_bytes is None:
        return
    over = {name: size for name, size in sizes.items() if size > preset.max_graph_bytes}
    if over:
        name, size = max(over.items(), key=lambda item: item[1])
        limit = f"over the {_size(preset.max_graph_bytes)} one HTP graph may hold on {preset.name} (configs/devices)"
        if name.startswith("part_1_of_") and num_parts > 1:
            raise QnnExportError(f"{name} (the embedding table) holds {_size(size)} of weights, {limit}; more parts cannot cut it")
        # Part 1 is the embedding; the decoder layers spread evenly over the others.
        suggested = 1 + math.ceil(max(num_parts - 1, 1) * size / preset.max_graph_bytes)
        raise QnnExportError(
            f"{name} holds {_size(size)} of weights, {limit}; split the model into more parts: parts={suggested} (now {num_parts})"
        )


def _size(count: int) -> str:
    return f"{count / 1e9:.2f} GB" if count >= 1e8 else f"{count / 1e6:.1f} MB"


def _graph_entry(context: Path, part, index, num_parts, ar, context_length, quantization: dict, seconds) -> dict:
    import onnx

    graph = onnx.load(str(context), load_external_data=False).graph
    node = graph.node[0]  # the one EPContext node
    binary = next((a.s.decode() for a in node.attribute if a.name == "ep_cache_context"), None)

    def io(values):
        entries = []
        for value in values:
            tensor = value.type.tensor_type
            entry = {"name": value.name, "dtype": onnx.TensorProto.DataType.Name(tensor.elem_type).lower(), "shape": [d.dim_value for d in tensor.shape.dim]}
            if value.name in quantization:
                entry["quantization"] = {"scale": quantization[value.name].scale, "offset": quantization[value.name].offset}
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


def simulator_check(model: EdgeLlamaForCausalLM, folder: str | os.PathLike, positions: int = 1) -> dict:
    """Runs `positions` tokens through the exported binaries on the HTP simulator and compares with the host
    simulation: top-1 agreement and logits SQNR in dB. One position uses only the token graphs (fast)."""
    import torch

    from ..configuration_edge_llama import EdgeLlamaConfig
    from ..evaluation.agreement import agreement
    from ..exported import load_exported

    exported = load_exported(folder, EdgeLlamaConfig.from_pretrained(folder))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (1, positions), generator=generator)
    started = time.perf_counter()
    with torch.no_grad():
        on_simulator = exported(ids).logits.float()
        seconds = time.perf_counter() - started
        host = model(ids).logits.float()
    measured = agreement(host, on_simulator)
    result = {
        "positions": positions,
        "top1_agreement": measured["top1_agreement"],
        "sqnr_db": measured["logits_sqnr_db"],
        "simulator_seconds": round(seconds, 2),
    }
    logger.info("HTP simulator vs host simulation: top-1 %.0f %%, SQNR %.1f dB", 100 * result["top1_agreement"], result["sqnr_db"])
    return result

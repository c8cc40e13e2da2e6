"""The Genie bundle of a QNN export: what `genie-t2t-run` on a phone or laptop reads.

```
<model>_part_1_of_N.bin … <model>_part_N_of_N.bin   one context per part: prompt + token graph, weights shared
genie_config.json            dialog: context, sampler, tokenizer, engine (QnnHtp, ctx-bins, positional encoding)
htp_backend_ext_config.json  soc_model, dsp_arch, weight sharing — the SoC the binaries were compiled for
tokenizer.json               the model's own tokenizer
metadata.json                every graph's I/O: name, dtype, shape, scale and offset (written by `qnn.py`)
README.md                    what each file is and how to run it
```

Genie reads the graph I/O by name (`input_ids`, `attention_mask`, `position_ids_cos`/`_sin`,
`past_key_{l}_in/_out`, `past_value_{l}_in/_out`, `logits`) and expects it quantized, the way AI Hub's
`--quantize_io` leaves it. `to_genie_io` gives the QDQ graphs that form before they are compiled:
the graph-boundary QuantizeLinear/DequantizeLinear nodes are removed so the graph takes and returns
the integer tensors, whose scale and offset `metadata.json` records. Genie's schema is strict (an
unknown key is an error), so the config holds only keys Genie knows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EdgeLlamaError

if TYPE_CHECKING:
    from ..presets import DevicePreset

GENIE_CONFIG = "genie_config.json"
HTP_CONFIG = "htp_backend_ext_config.json"
TOKENIZER = "tokenizer.json"

# Our graph input names → Genie's (it finds the RoPE tables by these names).
GENIE_INPUT_NAMES = {"position_cos": "position_ids_cos", "position_sin": "position_ids_sin"}
# Genie's sampler defaults when the model's generation config has none.
DEFAULT_SAMPLER = {"temp": 0.8, "top-k": 40, "top-p": 0.95}


class GenieBundleError(EdgeLlamaError, ValueError):
    """A Genie bundle that Genie could not run: a file missing, a name or a value that does not match."""


@dataclass(frozen=True)
class TensorQuantization:
    """How one graph I/O tensor is stored: `real = (q + offset) * scale` (QNN's convention, offset = -zero_point)."""

    dtype: str
    scale: float
    offset: int

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "scale": self.scale, "offset": self.offset}


def genie_binary_name(model_name: str, part_index: int, num_parts: int) -> str:
    return f"{model_name}_part_{part_index}_of_{num_parts}.bin"


def to_genie_io(qdq_path: str | os.PathLike, output_path: str | os.PathLike) -> dict[str, TensorQuantization]:
    """Rewrites a QDQ graph so its I/O is what Genie feeds: integer tensors under Genie's names.

    Each graph input that only feeds a QuantizeLinear becomes that node's integer output; each graph
    output made by a DequantizeLinear becomes that node's integer input; a tensor with a FLOAT 16
    encoding (a `Cast` pair) crosses as fp16; `input_ids` becomes int32.
    Returns each rewritten tensor's quantization (by its new name).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq_path))
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    renames: dict[str, str] = {}
    dropped = []
    quantization: dict[str, TensorQuantization] = {}

    def params(node) -> tuple[float, int, int]:
        scale = float(numpy_helper.to_array(initializers[node.input[1]]).reshape(-1)[0])
        zero_point = initializers[node.input[2]]
        return scale, int(numpy_helper.to_array(zero_point).reshape(-1)[0]), zero_point.data_type

    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for value in graph.input:
        users = consumers.get(value.name, [])
        new_name = GENIE_INPUT_NAMES.get(value.name, value.name)
        if len(users) == 1 and users[0].op_type == "QuantizeLinear":
            scale, zero_point, dtype = params(users[0])
            renames[users[0].output[0]] = new_name
            dropped.append(users[0])
            value.type.tensor_type.elem_type = dtype
            quantization[new_name] = TensorQuantization(_dtype_name(dtype), scale, -zero_point)
        elif len(users) == 1 and _is_cast_to(users[0], onnx.TensorProto.FLOAT16):  # a FLOAT 16 encoding
            renames[users[0].output[0]] = new_name
            dropped.append(users[0])
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
        elif value.type.tensor_type.elem_type == onnx.TensorProto.INT64:
            value.type.tensor_type.elem_type = onnx.TensorProto.INT32  # token ids: Genie writes int32
        if new_name != value.name:
            renames.setdefault(value.name, new_name)
        value.name = new_name
    producers = {name: node for node in graph.node for name in node.output}
    for value in graph.output:
        node = producers.get(value.name)
        if node is not None and node.op_type == "DequantizeLinear":
            scale, zero_point, dtype = params(node)
            renames[node.input[0]] = value.name
            dropped.append(node)
            value.type.tensor_type.elem_type = dtype
            quantization[value.name] = TensorQuantization(_dtype_name(dtype), scale, -zero_point)
        elif node is not None and _is_cast_to(node, onnx.TensorProto.FLOAT) and _is_cast_to(producers.get(node.input[0]), onnx.TensorProto.FLOAT16):
            renames[node.input[0]] = value.name
            dropped.append(node)
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    kept = [node for node in graph.node if all(node is not d for d in dropped)]
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = renames.get(name, name)
    del graph.node[:]
    graph.node.extend(kept)
    onnx.save(model, str(output_path))
    return quantization


def _is_cast_to(node, data_type: int) -> bool:
    return node is not None and node.op_type == "Cast" and any(a.name == "to" and a.i == data_type for a in node.attribute)


def _dtype_name(data_type: int) -> str:
    import onnx

    return onnx.TensorProto.DataType.Name(data_type).lower()


def genie_config(config: dict, generation_config: dict | None, ctx_bins: list[str]) -> dict:
    """`genie_config.json` for a model `config` (config.json as a dict) and its part binaries.

    Everything comes from the model: CL, vocabulary, bos/eos, head size, RoPE θ and the model's own
    `rope_scaling` values (a hard-coded factor is the classic Genie mismatch), and sampler defaults
    from its generation config.
    """
    generation_config = generation_config or {}
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    eos = generation_config.get("eos_token_id", config.get("eos_token_id"))
    bos = generation_config.get("bos_token_id", config.get("bos_token_id"))
    sampler = {"version": 1, "seed": 42}
    for key, hf_key in (("temp", "temperature"), ("top-k", "top_k"), ("top-p", "top_p")):
        value = generation_config.get(hf_key)
        sampler[key] = DEFAULT_SAMPLER[key] if value is None else value
    positional = {"type": "rope", "rope-dim": head_dim // 2, "rope-theta": _rope_theta(config)}
    scaling = _rope_scaling(config)
    if scaling is not None:
        positional["rope-scaling"] = scaling
    return {
        "dialog": {
            "version": 1,
            "type": "basic",
            "context": {
                "version": 1,
                "size": config["context_length"],
                "n-vocab": config["vocab_size"],
                "bos-token": -1 if bos is None else bos,
                "eos-token": eos,
            },
            "sampler": sampler,
            "tokenizer": {"version": 1, "path": TOKENIZER},
            "engine": {
                "version": 1,
                "n-threads": 3,
                "backend": {
                    "version": 1,
                    "type": "QnnHtp",
                    "QnnHtp": {
                        "version": 1,
                        "use-mmap": True,
                        "spill-fill-bufsize": 0,
                        "mmap-budget": 0,
                        "poll": True,
                        "cpu-mask": "0xe0",
                        "kv-dim": head_dim,
                        "allow-async-init": False,
                    },
                    "extensions": HTP_CONFIG,
                },
                "model": {
                    "version": 1,
                    "type": "binary",
                    "binary": {"version": 1, "ctx-bins": list(ctx_bins)},
                    "positional-encoding": positional,
                },
            },
        }
    }


def _rope_parameters(config: dict) -> dict:
    # transformers 5 keeps θ and scaling together in `rope_parameters`; 4.x had `rope_theta` + `rope_scaling`.
    return dict(config.get("rope_parameters") or config.get("rope_scaling") or {})


def _rope_theta(config: dict) -> float:
    theta = config.get("rope_theta", _rope_parameters(config).get("rope_theta"))
    if theta is None:
        raise GenieBundleError("config.json has no rope_theta (nor rope_parameters.rope_theta); Genie needs RoPE θ")
    return int(theta) if float(theta).is_integer() else float(theta)


def _rope_scaling(config: dict) -> dict | None:
    """The model's rope scaling in Genie's spelling, or None for plain RoPE."""
    parameters = _rope_parameters(config)
    rope_type = parameters.get("rope_type", parameters.get("type", "default"))
    if rope_type == "default":
        return None
    scaling = {"rope-type": rope_type}
    for key, value in parameters.items():
        if key not in ("rope_type", "type", "rope_theta"):
            scaling[key.replace("_", "-")] = value
    return scaling


def htp_backend_config(device: DevicePreset, weight_sharing: bool) -> dict:
    """`htp_backend_ext_config.json`: the SoC the binaries were compiled for and whether they share weights."""
    return {
        "devices": [{
            "soc_model": device.soc_model,
            "dsp_arch": device.dsp_arch,
            "cores": [{"core_id": 0, "perf_profile": "burst", "rpc_control_latency": 100}],
        }],
        "memory": {"mem_type": "shared_buffer"},
        "context": {"weight_sharing_enabled": weight_sharing},
    }


def write_genie_files(folder: str | os.PathLike, device: DevicePreset, ctx_bins: list[str], weight_sharing: bool,
                      qnn_sdk: str, compiled_by: str = "qnn") -> None:
    """Writes genie_config.json, htp_backend_ext_config.json and README.md into an exported folder that
    already holds config.json, the part binaries and tokenizer.json. `compiled_by`: `qnn` or `qai-hub`."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    generation = folder / "generation_config.json"
    generation_config = json.loads(generation.read_text()) if generation.is_file() else None
    (folder / GENIE_CONFIG).write_text(json.dumps(genie_config(config, generation_config, ctx_bins), indent=2) + "\n")
    (folder / HTP_CONFIG).write_text(json.dumps(htp_backend_config(device, weight_sharing), indent=2) + "\n")
    (folder / "README.md").write_text(_readme(config, device, ctx_bins, weight_sharing, qnn_sdk, compiled_by))


def _readme(config: dict, device: DevicePreset, ctx_bins: list[str], weight_sharing: bool, qnn_sdk: str, compiled_by: str) -> str:
    if weight_sharing:
        rows = [f"| `{name}` | part {i} of {len(ctx_bins)}: prompt and token graph in one context, weights shared |"
                for i, name in enumerate(ctx_bins, 1)]
    else:
        rows = [f"| `{name}` | one graph (no weight sharing on this device) |" for name in ctx_bins]
    arch = device.htp_arch.lstrip("v")
    if compiled_by == "qai-hub":
        origin = "compiled and linked by Qualcomm AI Hub (its job ids are in metadata.json)"
        checked = "AI Hub compiled these binaries; edge-llama did not run them."
        simulator_row = ""
    else:
        origin = f"compiled on the export machine with QNN SDK {qnn_sdk} (the SDK inside onnxruntime-qnn)"
        checked = (
            "The per-part binaries cannot be run on the x86 simulator (it does not load weight-shared contexts); "
            "the per-graph binaries beside them hold the same graphs, and the export checks them against the host "
            "simulation unless told to skip it (metadata.json `simulator_check`)."
        )
        simulator_row = "| `part_*_ar*_cl*_ctx.onnx` + `_qnn.bin` | one graph per binary, for the x86 HTP simulator (`edge-llama demo --checkpoint <this folder>`) |\n"
    table = "\n".join(rows)
    return f"""# Genie bundle for {device.name} ({device.chipset}, Hexagon {device.htp_arch})

Written by edge-llama's `{compiled_by}` export: context length {config["context_length"]}, AR {config["ar_lengths"]},
{config["num_parts"]} parts, {origin}.

| file | what it is |
|---|---|
{table}
| `genie_config.json` | Genie's dialog config: context size, vocabulary, bos/eos, sampler, tokenizer, QnnHtp engine, ctx-bins, RoPE |
| `htp_backend_ext_config.json` | the SoC (soc_model {device.soc_model}, dsp_arch {device.dsp_arch}) and weight sharing |
| `tokenizer.json` | the model's tokenizer |
| `metadata.json` | every graph's inputs and outputs: name, dtype, shape, scale, offset |
{simulator_row}
## Run it on a device

Copy this folder, `genie-t2t-run` and the matching QNN runtime libraries for the device
(`libGenie.so`, `libQnnHtp.so`, `libQnnHtpV{arch}Stub.so`, `libQnnHtpV{arch}Skel.so`, `libQnnSystem.so`;
the same QNN SDK version as the one that compiled the binaries: {qnn_sdk}) to the phone, then:

```bash
adb push <this folder> /data/local/tmp/genie_bundle
adb shell
cd /data/local/tmp/genie_bundle
export LD_LIBRARY_PATH=$PWD ADSP_LIBRARY_PATH=$PWD
./genie-t2t-run -c genie_config.json -p "<your prompt, in the model's chat template>"
```

{checked}
"""


def validate_bundle(folder: str | os.PathLike) -> None:
    """Checks a Genie bundle the way Genie would read it; raises `GenieBundleError` listing every problem.

    JSON files parse; every `ctx-bins` entry and the tokenizer exist; the context size, vocabulary and
    graph names agree with metadata.json; the HTP config names the SoC metadata.json was compiled for.
    """
    folder = Path(folder)
    problems: list[str] = []

    def load(name: str) -> dict | None:
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            problems.append(f"{name} is not valid JSON ({error})")
            return None

    genie, htp, metadata = load(GENIE_CONFIG), load(HTP_CONFIG), load("metadata.json")
    if genie is not None:
        try:
            dialog = genie["dialog"]
            ctx_bins = dialog["engine"]["model"]["binary"]["ctx-bins"]
            tokenizer = dialog["tokenizer"]["path"]
        except (KeyError, TypeError) as error:
            problems.append(f"{GENIE_CONFIG} lacks {error}")
            ctx_bins, tokenizer, dialog = [], TOKENIZER, None
        for name in ctx_bins:
            if not (folder / name).is_file():
                problems.append(f"{GENIE_CONFIG} ctx-bins names {name}, which is not in {folder}")
        if not (folder / tokenizer).is_file():
            problems.append(f"{GENIE_CONFIG} tokenizer path {tokenizer} is not in {folder}")
        if metadata is not None and dialog is not None:
            if dialog["context"]["size"] != metadata["context_length"]:
                problems.append(f"context size {dialog['context']['size']} != the graphs' CL {metadata['context_length']}")
            per_part = 1 if metadata.get("weight_sharing", True) else len(metadata["ar_lengths"])
            if len(ctx_bins) != metadata["num_parts"] * per_part:
                problems.append(f"{len(ctx_bins)} ctx-bins for {metadata['num_parts']} parts of {per_part} binaries each")
    if metadata is not None:
        for graph in metadata.get("graphs", []):
            expected = _expected_genie_name(graph, metadata)
            if graph.get("genie_name") != expected:
                problems.append(f"graph {graph.get('context_file')} is named {graph.get('genie_name')!r}, expected {expected!r}")
            for key in ("context_file", "binary_file"):
                if graph.get(key) and not (folder / graph[key]).is_file():
                    problems.append(f"metadata.json names {graph[key]}, which is not in {folder}")
        for part in metadata.get("genie_binaries", []):
            if part["file"] not in (genie or {}).get("dialog", {}).get("engine", {}).get("model", {}).get("binary", {}).get("ctx-bins", []):
                problems.append(f"metadata.json lists {part['file']} but {GENIE_CONFIG} does not read it")
        if htp is not None:
            device = htp.get("devices", [{}])[0]
            expected = (metadata["device"]["soc_model"], metadata["device"]["htp_arch"])
            if (device.get("soc_model"), device.get("dsp_arch")) != expected:
                problems.append(f"{HTP_CONFIG} targets {(device.get('soc_model'), device.get('dsp_arch'))}, the binaries {expected}")
    if problems:
        raise GenieBundleError(f"{folder} is not a valid Genie bundle: " + "; ".join(problems))


def _expected_genie_name(graph: dict, metadata: dict) -> str:
    from .qnn import genie_graph_name

    index, num_parts = (int(x) for x in graph["part"].removeprefix("part_").split("_of_"))
    return genie_graph_name(graph["ar_length"], metadata["context_length"], index, num_parts)

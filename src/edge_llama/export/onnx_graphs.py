"""The AR graphs as ONNX, both pointing into one shared `model.data` (Qualcomm AI Hub's upload form).

```
model_ar128_cl4096.onnx   graph of the prompt processor
model_ar1_cl4096.onnx     graph of the token generator
model.data                every weight once; both graphs reference the same offsets
```

Graph I/O names: `input_ids`, `attention_mask`, `position_cos`, `position_sin`, `past_key_{l}_in`,
`past_value_{l}_in` → `logits`, `past_key_{l}_out`, `past_value_{l}_out`. Weight initializers carry the
edge model's parameter names (`model.layers.0.self_attn.q_proj.0.weight`; a tied lm_head is
`model.embed_tokens.weight`), which is what `model.encodings` refers to.

How: torch's dynamo exporter (over two decoder layers, the rest repeated in ONNX: `layer_repeat`)
without its optimizer (which renames and copies weights), our own
light optimization with the weights declared graph inputs meanwhile so no pass can fold or rename
them, then the weights streamed once into `model.data` and referenced from every graph.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ..errors import EdgeLlamaError
from ..serialization.model_data import FILE_NAME as DATA_FILE
from ..serialization.model_data import ModelDataError, TensorLocation, write_model_data
from .layer_repeat import RepeatUnsupported, repeat_layers, short_trace
from .value_names import name_activation_values

if TYPE_CHECKING:
    import onnx_ir as ir

    from ..configuration_edge_llama import EdgeLlamaConfig
    from ..modeling_edge_llama import EdgeLlamaForCausalLM


class GraphMismatchError(EdgeLlamaError, ValueError):
    """A graph in a checkpoint folder does not fit the folder's config."""


def graph_file_name(ar_length: int, context_length: int) -> str:
    return f"model_ar{ar_length}_cl{context_length}.onnx"


def io_names(num_layers: int) -> tuple[list[str], list[str]]:
    """Graph input and output names, in the order the graph module's arguments flatten."""
    layers = range(num_layers)
    inputs = ["input_ids", "attention_mask", "position_cos", "position_sin"]
    inputs += [f"past_key_{l}_in" for l in layers] + [f"past_value_{l}_in" for l in layers]
    outputs = ["logits"] + [f"past_key_{l}_out" for l in layers] + [f"past_value_{l}_out" for l in layers]
    return inputs, outputs


def canonical_parameters(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Each parameter once under its first name, and every name → that canonical name."""
    canonical: dict[str, torch.Tensor] = {}
    first_name_of: dict[int, str] = {}
    alias: dict[str, str] = {}
    for name, tensor in model.named_parameters(remove_duplicate=False):
        first = first_name_of.setdefault(id(tensor), name)
        if first == name:
            canonical[name] = tensor
        alias[name] = first
    return canonical, alias


@dataclass
class GraphSpec:
    """One graph to export: a module holding the edge model as `.model`, its example inputs, the I/O
    names, and the activation encodings whose values it must name."""

    file_name: str
    module: torch.nn.Module
    args: tuple
    input_names: list[str]
    output_names: list[str]
    activation_names: list[str] = field(default_factory=list)


@dataclass
class ExportedGraph:
    path: Path
    weights: set[str]  # canonical parameter names the graph reads from model.data
    value_names: dict[str, str]  # activation encoding name → the graph value that carries it


def export_onnx_graphs(
    model: EdgeLlamaForCausalLM,
    output_dir: str | os.PathLike,
    keep_metadata: bool = False,
    activation_names: Iterable[str] = (),
) -> dict[int, Path]:
    """Writes one graph per AR length of `model.config` and the shared `model.data` into `output_dir`.

    `activation_names` are the activation encodings the graphs must carry: their values are renamed
    after them (`model.layers.0.mlp.down_proj:output0`, see `value_names`).
    """
    inputs, outputs = io_names(model.config.num_hidden_layers)
    specs = {}
    for ar in model.config.ar_lengths:
        graph = model.graph(ar).eval()
        file_name = graph_file_name(ar, model.config.context_length)
        specs[ar] = GraphSpec(file_name, graph, graph.example_inputs(), inputs, outputs, list(activation_names))
    exported = export_graphs(model, list(specs.values()), output_dir, keep_metadata)
    for graph in exported.values():
        renamed = {name: value for name, value in graph.value_names.items() if name != value}
        if renamed:
            raise RuntimeError(f"{graph.path.name}: encodings landed on graph inputs/outputs under other names: {renamed}")
    return {ar: exported[spec.file_name].path for ar, spec in specs.items()}


def export_graphs(
    model: EdgeLlamaForCausalLM, specs: list[GraphSpec], output_dir: str | os.PathLike, keep_metadata: bool = False
) -> dict[str, ExportedGraph]:
    """Exports every graph of `specs` into `output_dir`, all reading their weights from one `model.data`."""
    import onnx_ir as ir
    from tqdm.auto import tqdm

    for name in ("onnx_ir", "onnxscript"):  # pass-by-pass chatter, e.g. "skipping constant folding for a graph input"
        logging.getLogger(name).setLevel(logging.ERROR)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    canonical, alias = canonical_parameters(model)
    # Even from two traced layers a graph takes seconds to tens of seconds: show which one is on its way.
    progress = tqdm(specs, desc="ONNX graphs", unit="graph", disable=None)
    exported = {}
    for spec in progress:
        progress.set_postfix_str(spec.file_name)
        exported[spec.file_name] = _export_graph(spec, model, alias, keep_metadata)
    used = set().union(*(weights for _, weights, _ in exported.values()))
    locations = write_model_data(output_dir / DATA_FILE, ((n, t) for n, t in canonical.items() if n in used))
    results = {}
    for file_name, (onnx_model, weights, value_names) in exported.items():
        for name in weights:
            value = onnx_model.graph.initializers[name]
            location = locations[name]
            value.const_value = ir.ExternalTensor(
                DATA_FILE, location.offset, location.length, value.const_value.dtype,
                shape=value.const_value.shape, name=name, base_dir=str(output_dir),
            )
        path = output_dir / file_name
        ir.save(onnx_model, str(path))  # external tensors are written as references only
        results[file_name] = ExportedGraph(path, weights, value_names)
    return results


def trace_onnx(spec: GraphSpec, model: torch.nn.Module, repeat: bool = True) -> ir.Model:
    """The graph of `spec` as traced by torch's dynamo exporter, unoptimized.

    With `repeat`, a graph of three or more identical decoder layers is traced over two of them and
    the second repeated (`layer_repeat`): the same graph, many times faster for deep models.
    """
    with short_trace(spec) if repeat else contextlib.nullcontext() as short:
        target = short or spec
        # The exporter prints its progress to stdout; keep it for --verbose logs instead.
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()) as chatter:
            program = torch.onnx.export(
                target.module, target.args, dynamo=True, input_names=target.input_names,
                output_names=target.output_names, optimize=False, verify=False, report=False,
            )
    logger = logging.getLogger(__name__)
    logger.debug(chatter.getvalue())
    onnx_model = program.model
    del program
    if short is not None:
        try:
            repeat_layers(onnx_model, short, model, spec)
        except RepeatUnsupported as reason:
            logger.info("%s: tracing every layer (%s)", spec.file_name, reason)
            return trace_onnx(spec, model, repeat=False)
    return onnx_model


def _export_graph(
    spec: GraphSpec, model: torch.nn.Module, alias: dict[str, str], keep_metadata: bool
) -> tuple[ir.Model, set[str], dict[str, str]]:
    onnx_model = trace_onnx(spec, model)
    onnx_graph = onnx_model.graph
    weights = []
    for exported_name in list(onnx_graph.initializers):
        # The exported modules hold the model as `.model`, so exported names are "model." + parameter names.
        name = alias.get(exported_name.removeprefix("model.")) if exported_name.startswith("model.") else None
        if name is None:
            continue  # a constant the exporter made
        value = onnx_graph.initializers[exported_name]
        value.name = name
        weights.append(value)
    # The modules are traced under "model." too (scopes read "model.model.layers.0…").
    value_names = name_activation_values(onnx_graph, spec.activation_names, scope_prefix="model.")
    num_inputs = len(onnx_graph.inputs)
    onnx_graph.inputs.extend(weights)  # declared inputs are never folded, deduplicated or renamed
    _optimize(onnx_model)
    del onnx_graph.inputs[num_inputs:]
    if not keep_metadata:  # stack traces and FX text: ~95 % of the graph file
        for node in onnx_graph:
            node.metadata_props.clear()
    for value in weights:
        if onnx_graph.initializers.get(value.name) is not value:
            raise RuntimeError(f"ONNX export lost the weight {value.name}")
    values = {value.name for node in onnx_graph for value in node.outputs} | {value.name for value in onnx_graph.inputs}
    lost = [name for name in value_names.values() if name not in values]
    if lost:
        raise RuntimeError(f"ONNX optimization removed {len(lost)} encoded value(s) from {spec.file_name}, e.g. {lost[:3]}")
    return onnx_model, {value.name for value in weights}, value_names


def _optimize(onnx_model) -> None:
    """Inline, fold constants, deduplicate, drop the empty Conv biases the exporter adds.

    onnxscript's full optimizer also runs a pattern rewriter that takes minutes on a 30-layer model
    and here only removes those biases, which the last loop does directly.
    """
    import onnx_ir as ir
    import onnx_ir.passes.common as common
    from onnxscript.optimizer import _constant_folding as folding

    fold = folding.FoldConstantsPass(
        shape_inference=True,
        input_size_limit=folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
        output_size_limit=folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT,
        should_fold=lambda node: None,
    )
    ir.passes.Sequential(
        common.InlinePass(),
        fold,
        common.RemoveUnusedNodesPass(),
        fold,
        common.RemoveUnusedNodesPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(),
        common.RemoveUnusedNodesPass(),
        common.NameFixPass(),
    )(onnx_model)
    for node in onnx_model.graph:
        if node.op_type == "Conv" and node.domain == "" and len(node.inputs) == 3 and node.inputs[2] is None:
            node.resize_inputs(2)


def read_graph_weights(folder: str | os.PathLike, config: EdgeLlamaConfig) -> dict[str, TensorLocation]:
    """Where every weight of the folder's graphs lives in `model.data`, checked against `config`.

    Every AR graph the config names must exist, have the config's I/O shapes, and point at the same
    bytes for the same weight. Nothing is read from `model.data` here.
    """
    import onnx

    folder = Path(folder)
    locations: dict[str, TensorLocation] = {}
    inputs, _ = io_names(config.num_hidden_layers)
    for ar in config.ar_lengths:
        path = folder / graph_file_name(ar, config.context_length)
        if not path.is_file():
            found = sorted(p.name for p in folder.glob("model_ar*_cl*.onnx"))
            raise GraphMismatchError(
                f"{folder}: config.json asks for AR={ar} at CL={config.context_length}, so {path.name} should exist; "
                f"found {found or 'no graphs'}. The folder is incomplete or its config was edited."
            )
        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception as error:  # noqa: BLE001 - protobuf raises several types
            raise GraphMismatchError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from error
        _check_io(path, graph, inputs, config, ar)
        for initializer in graph.initializer:
            if initializer.data_location != onnx.TensorProto.EXTERNAL:
                continue
            location = _external_location(path, initializer)
            if locations.setdefault(initializer.name, location) != location:
                raise GraphMismatchError(f"{path.name}: weight {initializer.name} points at other bytes than in the other graph")
    return locations


def _external_location(path: Path, initializer) -> TensorLocation:
    info = {entry.key: entry.value for entry in initializer.external_data}
    where = f"{path.name}: weight {initializer.name}"
    location = info.get("location", "")
    if location != DATA_FILE:
        raise ModelDataError(f"{where} points at {location!r}; weights may only live in {DATA_FILE} beside the graph")
    try:
        offset, length = int(info.get("offset", 0)), int(info["length"])
    except (KeyError, ValueError) as error:
        raise ModelDataError(f"{where} has no valid offset/length") from error
    try:
        return TensorLocation.from_onnx(initializer.name, initializer.data_type, initializer.dims, offset, length)
    except ModelDataError as error:
        raise ModelDataError(f"{path.name}: {error}") from error


def _check_io(path: Path, graph, inputs: list[str], config, ar: int) -> None:
    found = [value.name for value in graph.input]
    if found != inputs:
        raise GraphMismatchError(
            f"{path.name}: inputs {found[:6]}… do not match the config's {config.num_hidden_layers} layers "
            f"(expected {inputs[:6]}…)"
        )
    expected = {
        "input_ids": [1, ar],
        "attention_mask": [1, 1, ar, config.context_length],
        "past_key_0_in": [config.num_key_value_heads, 1, config.head_dim, config.context_length - ar],
    }
    for value in graph.input:
        if value.name in expected:
            dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
            if dims != expected[value.name]:
                raise GraphMismatchError(f"{path.name}: input {value.name} has shape {dims}, the config implies {expected[value.name]}")

"""Exports a many-layer graph by tracing two of its decoder layers and repeating the second in ONNX.

`torch.export` and the ONNX translation cost time in proportion to the graph: for SmolLM2's 30
layers, minutes per graph on a laptop CPU; for an 8B model far more. Every decoder layer of an edge
graph is the same computation on its own weights and KV inputs, so the exporter only needs to see
two of them:

1. trace the graph with only its first two layers (`a`, `a+1`);
2. take the nodes traced inside layer `a+1` as the template (layer `a` keeps the first layer's own
   structure; layer `a+1` reads the residual stream from another layer, as all later ones do);
3. for each further layer `l`, clone the template with layer `l`'s weights, `past_key_{l}_in`,
   `past_value_{l}_in` → `past_key_{l}_out`, `past_value_{l}_out`, and its module scope, and chain
   it after the previous one; what read the template's output now reads the last clone's.

The result has the full graph's inputs, outputs, weights and module scopes (activation encodings
find their values as in a full trace); only the names of intermediate values differ. Whatever does
not fit this pattern (layers of different structure, a template that reads another layer's values)
raises `RepeatUnsupported`, and the caller traces the whole graph instead.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .value_names import module_scopes

if TYPE_CHECKING:
    import onnx_ir as ir

    from .onnx_graphs import GraphSpec

MIN_LAYERS = 3  # with two layers there is nothing to repeat
_KV_IO = re.compile(r"^past_(key|value)_(\d+)_(in|out)$")


class RepeatUnsupported(Exception):
    """The graph cannot be built from a repeated layer; trace it whole."""


@dataclass
class ShortTrace:
    """The same graph over its first two decoder layers: what to trace, and which layers it stands for."""

    module: torch.nn.Module
    args: tuple
    input_names: list[str]
    output_names: list[str]
    layers: range  # every decoder layer of the full graph


@contextlib.contextmanager
def short_trace(spec: GraphSpec) -> Iterator[ShortTrace | None]:
    """Narrows `spec.module` to its first two layers while the caller traces it; None if it cannot."""
    from ..modeling_edge_llama import EdgeLlamaGraph
    from ..split import EdgeLlamaPart

    module = spec.module
    if isinstance(module, EdgeLlamaGraph):
        body = module.model.model
        layers = range(len(body.layers))
        if len(layers) < MIN_LAYERS or not _same_structure(body.layers, layers):
            yield None
            return
        input_ids, mask, cos, sin, keys, values = spec.args
        args = (input_ids, mask, cos, sin, list(keys[:2]), list(values[:2]))
        everything = body.layers
        body.layers = torch.nn.ModuleList(list(everything)[:2])
        try:
            yield ShortTrace(module, args, _keep_kv(spec.input_names, layers[:2]), _keep_kv(spec.output_names, layers[:2]), layers)
        finally:
            body.layers = everything
        return
    if isinstance(module, EdgeLlamaPart) and len(module.layers) >= MIN_LAYERS:
        layers = module.layers
        if not _same_structure(module.model.model.layers, layers):
            yield None
            return
        count = len(layers)
        head, keys, values = spec.args[:4], spec.args[4 : 4 + count], spec.args[4 + count :]
        args = (*head, *keys[:2], *values[:2])
        names = module.input_names, module.output_names
        module.layers = layers[:2]
        module.input_names = _keep_kv(spec.input_names, layers[:2])
        module.output_names = _keep_kv(spec.output_names, layers[:2])
        try:
            yield ShortTrace(module, args, module.input_names, module.output_names, layers)
        finally:
            module.layers = layers
            module.input_names, module.output_names = names
        return
    yield None


def repeat_layers(onnx_model: ir.Model, short: ShortTrace, model: torch.nn.Module, spec: GraphSpec, prefix: str = "model.") -> None:
    """Grows the traced two-layer `onnx_model` into the full graph of `spec` in place.

    `model` holds every layer's weights (as the traced module holds them under `prefix`).
    """
    graph = onnx_model.graph
    first, template_layer = short.layers[0], short.layers[1]
    template_scope = f"model.layers.{template_layer}"
    template = [node for node in graph if template_scope in module_scopes(node, prefix)]
    if not template:
        raise RepeatUnsupported(f"no nodes traced inside {prefix}{template_scope}")
    members = {id(node) for node in template}
    weights_of = _layer_weights(model, prefix)
    hidden_in, hidden_out = _chain_values(graph, template, members, first, prefix)

    outputs_by_name = {value.name: value for value in graph.outputs}
    previous_out = hidden_out
    clones: list[ir.Node] = []
    new_inputs: dict[str, ir.Value] = {}
    new_outputs: dict[str, ir.Value] = {}
    for layer in short.layers[2:]:
        mapping: dict[int, ir.Value] = {id(hidden_in): previous_out}
        for node in template:
            inputs = [None if value is None else _layer_input(value, mapping, layer, template_layer, weights_of, graph,
                                                              new_inputs, prefix) for value in node.inputs]
            clone = _clone_node(node, inputs, template_layer, layer)
            for old, new in zip(node.outputs, clone.outputs):
                mapping[id(old)] = new
            clones.append(clone)
        for name in (f"past_key_{template_layer}_out", f"past_value_{template_layer}_out"):
            new_outputs[_rename_layer_io(name, layer)] = mapping[id(outputs_by_name[name])]
        previous_out = mapping[id(hidden_out)]
    graph.insert_after(template[-1], clones)
    cloned = {id(node) for node in clones}

    # What read the template's output (the final norm, or the part's hidden-state output) reads the last layer's.
    if hidden_out.is_graph_output():
        index = list(graph.outputs).index(hidden_out)
        name = hidden_out.name
        hidden_out.name = f"{name}_layer_{template_layer}"
        previous_out.name = name
        graph.outputs[index] = previous_out
    for user, slot in list(hidden_out.uses()):
        if id(user) not in members and id(user) not in cloned:
            user.replace_input_with(slot, previous_out)
    for name, value in new_outputs.items():
        value.name = name
    _order_io(graph, spec, new_inputs, new_outputs)
    graph.sort()


def _keep_kv(names: list[str], layers: range) -> list[str]:
    """`names` without the KV inputs/outputs of layers outside `layers`."""
    kept = []
    for name in names:
        match = _KV_IO.match(name)
        if match is None or int(match.group(2)) in layers:
            kept.append(name)
    return kept


def _same_structure(layers: torch.nn.ModuleList, indices: range) -> bool:
    def signature(layer: torch.nn.Module) -> list:
        modules = [(name, type(module)) for name, module in layer.named_modules()]
        tensors = [(name, tuple(t.shape), t.dtype) for name, t in (*layer.named_parameters(), *layer.named_buffers())]
        return [modules, tensors]

    reference = signature(layers[indices[0]])
    return all(signature(layers[index]) == reference for index in indices[1:])


def _layer_weights(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    return {prefix + name: tensor for name, tensor in tensors.items()}


def _chain_values(graph: ir.Graph, template: list[ir.Node], members: set[int], first: int, prefix: str) -> tuple[ir.Value, ir.Value]:
    """The residual stream into and out of the template; anything else crossing its edge is refused."""
    first_scope = f"model.layers.{first}"
    graph_inputs = {id(value) for value in graph.inputs}
    hidden_in = None
    for node in template:
        for value in node.inputs:
            if value is None or value.is_initializer() or id(value) in graph_inputs:
                continue
            producer = value.producer()
            if producer is None or id(producer) in members or producer.op_type == "Constant":
                continue
            if first_scope not in module_scopes(producer, prefix):
                raise RepeatUnsupported(f"layer template reads {value.name} from outside the layers")
            if hidden_in is not None and value is not hidden_in:
                raise RepeatUnsupported(f"layer template reads two values of the first layer: {hidden_in.name}, {value.name}")
            hidden_in = value
    outputs = []
    for node in template:
        for value in node.outputs:
            leaves = value.is_graph_output() or any(id(user) not in members for user, _ in value.uses())
            if leaves and not _KV_IO.match(value.name):
                outputs.append(value)
    if hidden_in is None or len(outputs) != 1:
        raise RepeatUnsupported(f"layer template has {len(outputs)} outputs besides its KV entries")
    return hidden_in, outputs[0]


def _layer_input(value, mapping, layer, template_layer, weights_of, graph, new_inputs, prefix) -> ir.Value:
    """What the clone for `layer` reads where the template reads `value` (new KV inputs and weights are made once)."""
    import onnx_ir as ir

    if id(value) in mapping:
        return mapping[id(value)]
    if value.is_graph_input():
        match = _KV_IO.match(value.name)
        if match is None or int(match.group(2)) != template_layer:
            return value  # attention mask, RoPE tables: shared by every layer
        name = _rename_layer_io(value.name, layer)
        new_inputs[name] = mapping[id(value)] = ir.Value(name=name, shape=value.shape, type=value.type)
        return mapping[id(value)]
    weight_prefix = f"{prefix}model.layers.{template_layer}."
    if value.is_initializer() and value.name.startswith(weight_prefix):
        name = f"{prefix}model.layers.{layer}." + value.name.removeprefix(weight_prefix)
        tensor = weights_of.get(name)
        if tensor is None or value.const_value is None:
            raise RepeatUnsupported(f"no tensor {name} for the repeated layer")
        clone = ir.Value(name=name, shape=value.shape, type=value.type,
                         const_value=type(value.const_value)(tensor.detach(), name=name))
        graph.register_initializer(clone)
        mapping[id(value)] = clone
        return clone
    if value.is_initializer() and ".layers." in value.name:
        raise RepeatUnsupported(f"layer template reads {value.name}")
    return value  # exporter constants and shared values


def _clone_node(node: ir.Node, inputs: list, template_layer: int, layer: int) -> ir.Node:
    import onnx_ir as ir

    old, new = f"layers.{template_layer}.", f"layers.{layer}."
    old_end, new_end = f"layers.{template_layer}'", f"layers.{layer}'"
    metadata = {key: value.replace(old, new).replace(old_end, new_end) for key, value in node.metadata_props.items()}
    clone = ir.Node(
        node.domain, node.op_type, inputs, list(node.attributes.values()), overload=node.overload,
        num_outputs=len(node.outputs), version=node.version, name=f"{node.name}_layer_{layer}" if node.name else None,
        doc_string=node.doc_string, metadata_props=metadata,
    )
    for source, target in zip(node.outputs, clone.outputs):
        target.name = f"{source.name}_layer_{layer}" if source.name else None
        target.shape, target.type = source.shape, source.type
    return clone


def _rename_layer_io(name: str, layer: int) -> str:
    kind, _, direction = _KV_IO.match(name).groups()
    return f"past_{kind}_{layer}_{direction}"


def _order_io(graph: ir.Graph, spec: GraphSpec, new_inputs: dict[str, ir.Value], new_outputs: dict[str, ir.Value]) -> None:
    """Graph inputs and outputs in the order and under the names of the full graph."""
    inputs = {value.name: value for value in graph.inputs} | new_inputs
    outputs = {value.name: value for value in graph.outputs} | new_outputs
    if set(inputs) != set(spec.input_names) or set(outputs) != set(spec.output_names):
        raise RuntimeError(f"repeating layers gave the graph inputs {sorted(set(inputs) ^ set(spec.input_names))[:4]} / "
                           f"outputs {sorted(set(outputs) ^ set(spec.output_names))[:4]} that the full graph does not have")
    graph.inputs.clear()
    graph.inputs.extend(inputs[name] for name in spec.input_names)
    graph.outputs.clear()
    graph.outputs.extend(outputs[name] for name in spec.output_names)

"""Names the ONNX values that carry activation encodings after the modules that quantize them.

`model.encodings` calls an activation `<module>:output0` or `<module>:input1` (the module's name in
the edge model), or by its graph name (`attention_mask`, `past_key_0_in`, `logits`). The exporter
names intermediate values `add_7`, `matmul_3`…, so without help the encodings would point at
nothing. The dynamo exporter records, per node, the stack of modules it was traced in
(`pkg.torch.onnx.name_scopes`); from that each module's boundary values follow:

- its outputs: values made inside the module and used outside it (or returned by the graph);
- its inputs: values used inside the module but made outside it, in order of first use, weights and
  constants left out.

Those values are renamed to the encoding names, so a QNN converter or AI Hub finds every encoding.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import EdgeLlamaError

if TYPE_CHECKING:
    import onnx_ir as ir

SCOPES_KEY = "pkg.torch.onnx.name_scopes"


class ValueNamingError(EdgeLlamaError, RuntimeError):
    """An activation encoding cannot be tied to exactly one value of the exported graph."""


@dataclass
class Boundary:
    inputs: list[ir.Value] = field(default_factory=list)
    outputs: list[ir.Value] = field(default_factory=list)


def module_boundaries(graph: ir.Graph, scope_prefix: str = "") -> dict[str, Boundary]:
    """Module name (without `scope_prefix`) → its boundary values, from the exporter's node metadata."""
    members: dict[str, list[ir.Node]] = {}
    scopes_of: dict[int, set[str]] = {}
    for node in graph:
        scopes = module_scopes(node, scope_prefix)
        scopes_of[id(node)] = scopes
        for scope in scopes:
            members.setdefault(scope, []).append(node)
    graph_outputs = {id(value) for value in graph.outputs}
    boundaries: dict[str, Boundary] = {}
    for scope, nodes in members.items():
        # The exporter reuses constants across modules; they are never activations.
        nodes = [node for node in nodes if node.op_type != "Constant"]
        boundary = Boundary()
        seen: set[int] = set()
        for node in nodes:
            for value in node.inputs:
                if value is None or id(value) in seen or _is_constant(value):
                    continue
                producer = value.producer()
                if producer is None or scope not in scopes_of.get(id(producer), ()):
                    seen.add(id(value))
                    boundary.inputs.append(value)
            for value in node.outputs:
                used_outside = any(scope not in scopes_of.get(id(user), ()) for user, _ in value.uses())
                if used_outside or id(value) in graph_outputs:
                    boundary.outputs.append(value)
        boundaries[scope] = boundary
    return boundaries


def name_activation_values(graph: ir.Graph, names: Iterable[str], scope_prefix: str = "") -> dict[str, str]:
    """Renames the boundary value behind each `<module>:outputN` / `<module>:inputN` in `names`.

    Returns encoding name → value name. That is the encoding's own name, except where the value is
    an input or output of this graph (the last layer's output is the `hidden_states_*` output of a
    split part, say): then the graph's name wins and the encoding must be written under it. Plain
    names (`attention_mask`, `logits`, …) must be graph inputs or outputs.
    """
    boundaries = module_boundaries(graph, scope_prefix)
    io_names = {value.name for value in (*graph.inputs, *graph.outputs)}
    claimed: dict[int, str] = {}
    value_names: dict[str, str] = {}
    for name in names:
        module, separator, slot = name.rpartition(":")
        if not separator:
            if name not in io_names:
                raise ValueNamingError(f"activation encoding {name} names no input or output of the graph")
            value_names[name] = name
            continue
        value = _boundary_value(boundaries, module, slot, name)
        if id(value) in claimed:
            raise ValueNamingError(f"activation encodings {claimed[id(value)]} and {name} quantize the same graph value")
        claimed[id(value)] = name
        if not (value.is_graph_input() or value.is_graph_output()):
            value.name = name
        value_names[name] = value.name
    return value_names


def _boundary_value(boundaries: dict[str, Boundary], module: str, slot: str, name: str) -> ir.Value:
    boundary = boundaries.get(module)
    if boundary is None:
        raise ValueNamingError(f"activation encoding {name}: the graph has no nodes traced inside module {module}")
    kind, index = slot.rstrip("0123456789"), slot[len(slot.rstrip("0123456789")):]
    values = {"input": boundary.inputs, "output": boundary.outputs}.get(kind)
    if values is None or not index:
        raise ValueNamingError(f"activation encoding {name}: expected <module>:inputN or <module>:outputN")
    if int(index) >= len(values):
        raise ValueNamingError(f"activation encoding {name}: module {module} has {len(values)} {kind}(s) in the graph")
    return values[int(index)]


def module_scopes(node: ir.Node, scope_prefix: str) -> set[str]:
    raw = node.metadata_props.get(SCOPES_KEY)
    if not raw:
        return set()
    # The list ends with the node's own op name; the entries before it are the enclosing modules.
    scopes = ast.literal_eval(raw)  # a Python list literal
    return {scope.removeprefix(scope_prefix) for scope in scopes[:-1] if scope.startswith(scope_prefix)}


def _is_constant(value: ir.Value) -> bool:
    if value.is_initializer() or value.const_value is not None:
        return True
    producer = value.producer()
    return producer is not None and producer.op_type == "Constant"

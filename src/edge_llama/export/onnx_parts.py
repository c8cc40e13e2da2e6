"""`export(target="onnx")`: each part of the split model, for each AR, as ONNX — the form Qualcomm AI
Hub's compiler takes (one QDQ-free graph per part and AR, float weights in one shared `model.data`,
AIMET encodings beside them).

```
part_1_of_4_ar128_cl4096.onnx   part_1_of_4_ar1_cl4096.onnx   part_1_of_4.encodings
part_2_of_4_ar128_cl4096.onnx   part_2_of_4_ar1_cl4096.onnx   part_2_of_4.encodings
…
model.data                      every weight once, read by every graph
config.json  generation_config.json  tokenizer files
```

A part's encodings hold the weights its graphs read, the activations of its modules, its graph
inputs/outputs, and the tensors that cross a cut: `hidden_states_{l}` carries the encoding of the
tensor that produced it (the residual add of layer l-1; for `hidden_states_0`, the embedding's
output encoding where the recipe rounds it (an fp16 residual stream), else the embedding table's
grid, since a lookup only copies table values). Both AR graphs of a part name their values
alike, so one encodings file serves both.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..quantization.encodings import Encodings
from .onnx_graphs import GraphSpec, export_graphs

if TYPE_CHECKING:
    from ..modeling_edge_llama import EdgeLlamaForCausalLM
    from ..split import EdgeLlamaPart

_LAYER = re.compile(r"^model\.layers\.(\d+)\.")
_PER_LAYER_IO = re.compile(r"^past_(?:key|value)_(\d+)_(?:in|out)$")
_SHARED_INPUTS = ("attention_mask", "position_cos", "position_sin")


def part_file_name(part: EdgeLlamaPart, ar_length: int, context_length: int) -> str:
    return f"{part.name}_ar{ar_length}_cl{context_length}.onnx"


def export_onnx_parts(model: EdgeLlamaForCausalLM, output_dir: str | os.PathLike, parts: int | None = None) -> list[Path]:
    """Writes every part × AR graph, `model.data`, one encodings file per part (quantized models),
    the config and the tokenizer into `output_dir`; returns the graph paths."""
    from ..quantization.engines import get_engine

    output_dir = Path(output_dir)
    encodings = None
    graph_model = model
    if model.quantization is not None:
        engine = get_engine(model.quantization.recipe.engine)
        encodings, graph_model = engine.encodings(model), engine.float_model(model)
    split = graph_model.split(parts)
    config = graph_model.config
    specs: dict[str, tuple[EdgeLlamaPart, GraphSpec]] = {}
    for ar in config.ar_lengths:
        for part, inputs, _ in split.part_inputs(*graph_model.graph(ar).example_inputs()):
            names = [n for n in (encodings.activations if encodings else ()) if _belongs(n, part)]
            spec = GraphSpec(part_file_name(part, ar, config.context_length), part, inputs, part.input_names, part.output_names, names)
            specs[spec.file_name] = (part, spec)
    exported = export_graphs(graph_model, [spec for _, spec in specs.values()], output_dir)
    if encodings is not None:
        for part in split:
            graphs = [exported[name] for name, (owner, _) in specs.items() if owner is part]
            _part_encodings(encodings, part, graphs).write(output_dir / f"{part.name}.encodings")
    # Not a quantized checkpoint folder (from_pretrained must not take it for one): the recipe is
    # recorded under its own key.
    settings = {k: v for k, v in graph_model.config.to_dict().items() if k != "quantization_config"}
    export_config = graph_model.config.__class__.from_dict({**settings, "num_parts": len(split)})
    export_config.edge_llama_export = {
        "target": "onnx",
        "graphs": sorted(specs),
        "recipe": model.quantization.to_config() if model.quantization is not None else None,
    }
    export_config.save_pretrained(output_dir)
    model.generation_config.save_pretrained(output_dir)
    save_tokenizer(model, output_dir)
    return [graph.path for graph in exported.values()]


def _belongs(encoding_name: str, part: EdgeLlamaPart) -> bool:
    """Whether an activation encoding lives in `part`'s graphs."""
    module = encoding_name.rpartition(":")[0]
    if module:
        layer = _LAYER.match(module + ".")
        if layer:
            return int(layer.group(1)) in part.layers
        if module.startswith("model.embed_tokens"):
            return part.is_embedding
        return part.has_head  # model.norm, lm_head
    layer = _PER_LAYER_IO.match(encoding_name)
    if layer:
        return int(layer.group(1)) in part.layers
    if encoding_name in _SHARED_INPUTS:
        return not part.is_embedding
    return encoding_name in part.output_names  # logits


def _part_encodings(encodings: Encodings, part: EdgeLlamaPart, graphs) -> Encodings:
    result = Encodings(quantizer_args=dict(encodings.quantizer_args), excluded_layers=list(encodings.excluded_layers))
    weights = set().union(*(graph.weights for graph in graphs))
    result.params = {name: encoding for name, encoding in encodings.params.items() if name in weights}
    for graph in graphs:
        for name, value_name in graph.value_names.items():
            result.activations[value_name] = dataclasses.replace(encodings.activations[name], name=value_name)
    # Tensors that cross a cut: the consumer's input carries the producer's encoding.
    for name in (*part.input_names, *part.output_names):
        if name in result.activations:
            continue
        found = (encodings.activations.get(source) or encodings.params.get(source) for source in _cut_tensor_sources(name))
        encoding = next((encoding for encoding in found if encoding is not None), None)
        if encoding is not None:
            result.activations[name] = dataclasses.replace(encoding, name=name)
    return result


def _cut_tensor_sources(name: str) -> tuple[str, ...]:
    """The encodings a cut tensor may carry, first found wins: the embedding's own output encoding (an fp16
    residual stream starts there), else its table's grid; the residual add that made a later one."""
    match = re.fullmatch(r"hidden_states_(\d+)", name)
    if match is None:
        return ()
    layer = int(match.group(1))
    if layer == 0:
        return "model.embed_tokens:output0", "model.embed_tokens.weight"
    return (f"model.layers.{layer - 1}.mlp_residual:output0",)


def save_tokenizer(model, output_dir: Path) -> None:
    from ..checkpoints import load_tokenizer
    from ..errors import EdgeLlamaError

    try:
        load_tokenizer(model.name_or_path).save_pretrained(output_dir)
    except EdgeLlamaError:
        pass  # a model built in memory has none; the graphs are complete without it

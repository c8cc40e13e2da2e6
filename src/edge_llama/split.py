"""`model.split(parts=N)`: the static graph cut into N runnable parts with explicit inputs and outputs.

Why: Qualcomm's HTP limits one graph to about 2 GB (a context binary to about 4 GB), so a 3B/8B model
ships as several graphs called one after another. The cut follows AI Hub's Llama recipes:

```
part 1          input_ids → hidden_states_0                                   (the embedding lookup)
part 2 … N      hidden_states_{a}, attention_mask, position_cos, position_sin,
                past_key_{l}_in, past_value_{l}_in  (l = a … b-1)
                → hidden_states_{b} (or logits in part N), past_key_{l}_out, past_value_{l}_out
```

`hidden_states_{l}` is the tensor entering decoder layer `l` (in the model's hidden layout); the
decoder layers are spread as evenly as possible over parts 2 … N (earlier parts take the extra
layer), and the final norm and lm_head join part N. Parts share the model's modules, so a quantized
simulation's parts are quantized too, and chaining the parts computes exactly `graph_forward`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import EdgeLlamaConfigError

if TYPE_CHECKING:
    from .modeling_edge_llama import EdgeLlamaForCausalLM


def layer_ranges(num_layers: int, parts: int) -> list[range]:
    """The decoder layers of parts 2 … N: contiguous, as even as possible, earlier parts larger."""
    if not isinstance(parts, int) or isinstance(parts, bool) or not 2 <= parts <= num_layers + 1:
        raise EdgeLlamaConfigError(
            f"parts must be an integer from 2 (embedding + all {num_layers} layers) to {num_layers + 1} "
            f"(one layer per part), got {parts!r}"
        )
    groups = parts - 1
    base, extra = divmod(num_layers, groups)
    ranges, start = [], 0
    for group in range(groups):
        size = base + (group < extra)
        ranges.append(range(start, start + size))
        start += size
    return ranges


class EdgeLlamaPart(nn.Module):
    """Part `index` (1-based) of `num_parts`: a slice of the edge model's static graph.

    `forward(*inputs)` takes the tensors named by `input_names`, in that order, and returns the tuple
    named by `output_names`.
    """

    def __init__(self, model: EdgeLlamaForCausalLM, index: int, num_parts: int, layers: range | None):
        super().__init__()
        self.model = model
        self.index, self.num_parts = index, num_parts
        self.layers = layers if layers is not None else range(0)
        self.is_embedding = layers is None
        self.has_head = index == num_parts
        if self.is_embedding:
            self.input_names = ["input_ids"]
            self.output_names = ["hidden_states_0"]
        else:
            first, end = self.layers.start, self.layers.stop
            kv_in = [f"past_key_{l}_in" for l in self.layers] + [f"past_value_{l}_in" for l in self.layers]
            kv_out = [f"past_key_{l}_out" for l in self.layers] + [f"past_value_{l}_out" for l in self.layers]
            self.input_names = [f"hidden_states_{first}", "attention_mask", "position_cos", "position_sin", *kv_in]
            self.output_names = ["logits" if self.has_head else f"hidden_states_{end}", *kv_out]

    @property
    def name(self) -> str:
        return f"part_{self.index}_of_{self.num_parts}"

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.name} takes {len(self.input_names)} inputs ({', '.join(self.input_names[:4])}, …), got {len(inputs)}")
        body = self.model.model
        if self.is_embedding:
            return (body.layout.from_sequence(body.embed_tokens(inputs[0])),)
        hidden_states, mask, cos, sin = inputs[:4]
        count = len(self.layers)
        past_keys, past_values = inputs[4 : 4 + count], inputs[4 + count :]
        keys_out, values_out = [], []
        for layer_index, past_key, past_value in zip(self.layers, past_keys, past_values):
            hidden_states, key_out, value_out = body.layers[layer_index](hidden_states, cos, sin, mask, past_key, past_value)
            keys_out.append(key_out)
            values_out.append(value_out)
        if self.has_head:
            hidden_states = self.model.lm_head(body.layout.to_sequence(body.norm(hidden_states)))
        return (hidden_states, *keys_out, *values_out)


class EdgeLlamaSplit(nn.Module):
    """The parts of one model, in order; `forward` chains them and equals `graph_forward`."""

    def __init__(self, model: EdgeLlamaForCausalLM, parts: int):
        super().__init__()
        ranges = layer_ranges(model.config.num_hidden_layers, parts)
        self.parts = nn.ModuleList(
            [EdgeLlamaPart(model, 1, parts, None)]
            + [EdgeLlamaPart(model, index + 2, parts, layers) for index, layers in enumerate(ranges)]
        )

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, index: int) -> EdgeLlamaPart:
        return self.parts[index]

    def __iter__(self):
        return iter(self.parts)

    def part_inputs(self, input_ids, attention_mask, position_cos, position_sin, past_keys: Sequence, past_values: Sequence):
        """Runs the chain once and yields `(part, its input tensors, its outputs)` in order."""
        tensors = {"input_ids": input_ids, "attention_mask": attention_mask, "position_cos": position_cos, "position_sin": position_sin}
        for layer, (key, value) in enumerate(zip(past_keys, past_values)):
            tensors[f"past_key_{layer}_in"], tensors[f"past_value_{layer}_in"] = key, value
        for part in self.parts:
            inputs = tuple(tensors[name] for name in part.input_names)
            outputs = part(*inputs)
            tensors.update(zip(part.output_names, outputs))
            yield part, inputs, outputs

    def forward(self, input_ids, attention_mask, position_cos, position_sin, past_keys, past_values):
        """The same outputs as `model.graph_forward`: logits and the new KV entries of every layer."""
        outputs: dict[str, torch.Tensor] = {}
        for part, _, part_outputs in self.part_inputs(input_ids, attention_mask, position_cos, position_sin, past_keys, past_values):
            outputs.update(zip(part.output_names, part_outputs))
        layers = range(len(past_keys))
        return outputs["logits"], [outputs[f"past_key_{l}_out"] for l in layers], [outputs[f"past_value_{l}_out"] for l in layers]

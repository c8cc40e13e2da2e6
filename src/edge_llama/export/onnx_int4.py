"""`export(target="onnx-int4")`: one ONNX decoder with int4 `MatMulNBits` weights, in ONNX Runtime GenAI's form.

```
model.onnx, model.onnx.data   the decoder (export.onnx_int4_graph): KV cache as I/O in GenAI's names and layout
genai_config.json             what onnxruntime-genai (and Ryzen AI's GenAI flow) reads: sizes, I/O names, search defaults
config.json                   the model; `edge_llama_export` = {target: onnx-int4, recipe, max_seq_len, …}
generation_config.json, tokenizer files
```

Takes a float model (plain `MatMul` weights) or one quantized by a weight-only int4 recipe with float
activations: `w4-awq` (AWQ-scaled uint4 asymmetric groups), `w4-rtn`, or your own recipe YAML of that
kind. The int4 codes, scales and zero points are the model's own (its encodings), so the ONNX model
computes the host simulation's weights exactly; nothing is re-quantized. Runs in onnxruntime
(`generation.ort_backend`, `from_pretrained(<folder>)`) and in `onnxruntime-genai`.
"""

from __future__ import annotations

import logging
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EdgeLlamaError
from . import package_version
from . import onnx_int4_graph as graph

if TYPE_CHECKING:
    from ..modeling_edge_llama import EdgeLlamaForCausalLM
    from ..quantization.recipe import Recipe

TARGET = "onnx-int4"
MODEL_FILE = "model.onnx"
GENAI_CONFIG = "genai_config.json"
DEFAULT_MAX_SEQ_LEN = 256
INT4_ENCODINGS = ("PER_TENSOR", "PER_CHANNEL", "PER_BLOCK")
PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")

logger = logging.getLogger(__name__)  # progress lines; the CLI shows them unless -q


class OnnxInt4ExportError(EdgeLlamaError, ValueError):
    """The model cannot go to the onnx-int4 target."""


def takes_recipe(recipe: Recipe) -> bool:
    """Whether a recipe is weight-only int4 with float activations (what MatMulNBits computes)."""
    from ..quantization.recipe import Granularity, WeightScheme

    schemes = [recipe.weights, *(o.weights for o in recipe.overrides if isinstance(o.weights, WeightScheme))]
    return (
        recipe.activations is None
        and recipe.kv_cache is None
        and recipe.embeddings is None
        and all(s.bits == graph.BITS and s.granularity is not Granularity.LPBQ for s in schemes)
    )


def recipes_by_target() -> str:
    """`target: recipes` for every recipe under configs/, plus what onnx-int4 takes (a recipe lists one target)."""
    from ..quantization.recipe import available_recipes, load_recipe

    recipes = [load_recipe(name) for name in available_recipes()]
    targets: dict[str, list[str]] = {}
    for recipe in recipes:
        targets.setdefault(recipe.target, []).append(recipe.name)
    targets[TARGET] = [recipe.name for recipe in recipes if takes_recipe(recipe)]
    return "; ".join(f"{target}: {', '.join(names)}" for target, names in sorted(targets.items()))


def check_exportable(model: EdgeLlamaForCausalLM) -> None:
    """Raises a clear error for models the target does not take (before any work)."""
    config = model.config
    if getattr(config, "hidden_act", "silu") != "silu":
        raise OnnxInt4ExportError(f"the onnx-int4 graph has a SiLU-gated MLP; this model's hidden_act is {config.hidden_act!r}")
    state = model.quantization
    if state is None:
        return
    if not takes_recipe(state.recipe):
        raise OnnxInt4ExportError(
            f"the onnx-int4 target takes a float model or one quantized weight-only to int4 with float activations "
            f"(MatMulNBits); this model is quantized with {state.recipe.name} (for the {state.recipe.target} target). "
            f"Recipes by target — {recipes_by_target()}. Quantize the float checkpoint with w4-awq, or export this "
            "one to its own target."
        )
    int4_grids(model)  # every encoding must fit MatMulNBits: fail here, not halfway through writing


def int4_grids(model: EdgeLlamaForCausalLM) -> dict:
    """`{hf_name: (scale (N, groups), offset (N, groups), MatMulNBits block)}` of the quantized projections,
    gathered from the model's encodings (per-head entries of the split-head layout are concatenated)."""
    import torch

    from ..quantization.engines import get_engine

    encodings = get_engine(model.quantization.recipe.engine).encodings(model).params
    state = model.state_dict()
    names = [f"model.layers.{i}.{p}" for i in range(model.config.num_hidden_layers) for p in PROJECTIONS] + ["lm_head"]
    grids = {}
    for name in names:
        parts = [encodings[f"{name}.weight"]] if f"{name}.weight" in encodings else []
        head = 0
        while f"{name}.{head}.weight" in encodings:
            parts.append(encodings[f"{name}.{head}.weight"])
            head += 1
        if not parts:
            continue  # kept float by the recipe
        rows, width = state[f"{name}.weight"].shape
        scales, offsets = [], []
        for entry in parts:
            if entry.enc_type not in INT4_ENCODINGS or entry.bw != graph.BITS or entry.dtype != "INT":
                raise OnnxInt4ExportError(
                    f"model.encodings: {entry.name} is {entry.enc_type} {entry.dtype} {entry.bw}-bit; MatMulNBits takes "
                    f"{graph.BITS}-bit integer weights per tensor, channel or block. Quantize with w4-awq or w4-rtn."
                )
            scales.append(torch.tensor(entry.scale, dtype=torch.float32))
            offsets.append(torch.tensor(entry.offset, dtype=torch.float32))
        scale, offset = torch.cat(scales), torch.cat(offsets)
        if scale.numel() == 1:  # per tensor: one grid for every row
            scale, offset = scale.expand(rows), offset.expand(rows)
        scale, offset = scale.reshape(rows, -1).contiguous(), offset.reshape(rows, -1).contiguous()
        group = width // scale.shape[1]
        block = graph.matmul_nbits_block(group)
        if block is None or group * scale.shape[1] != width:
            raise OnnxInt4ExportError(
                f"{name}.weight: groups of {group} of its {width} input channels are not a multiple of a block size "
                f"MatMulNBits takes ({', '.join(map(str, graph.MATMUL_NBITS_BLOCKS))}); quantize with a group_size "
                "that is a multiple of 16 and divides the input width."
            )
        grids[name] = (scale, offset, block)
    return grids


def genai_config(model: EdgeLlamaForCausalLM, model_file: str = MODEL_FILE) -> dict:
    """The `genai_config.json` onnxruntime-genai reads for a decoder-only Llama."""
    config = model.config
    generation = model.generation_config
    eos = getattr(generation, "eos_token_id", None)
    eos = eos if eos is not None else config.eos_token_id
    pad = config.pad_token_id if config.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
    return {
        "model": {
            "bos_token_id": config.bos_token_id,
            "context_length": config.context_length,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": model_file,
                "head_size": config.head_dim,
                "hidden_size": config.hidden_size,
                "inputs": {
                    "input_ids": graph.INPUT_IDS,
                    "attention_mask": graph.ATTENTION_MASK,
                    "position_ids": graph.POSITION_IDS,
                    "past_key_names": graph.PAST_KEY,
                    "past_value_names": graph.PAST_VALUE,
                },
                "outputs": {
                    "logits": graph.LOGITS,
                    "present_key_names": graph.PRESENT_KEY,
                    "present_value_names": graph.PRESENT_VALUE,
                },
                "num_attention_heads": config.num_attention_heads,
                "num_hidden_layers": config.num_hidden_layers,
                "num_key_value_heads": config.num_key_value_heads,
            },
            "eos_token_id": eos,
            "pad_token_id": pad,
            "type": "llama",
            "vocab_size": config.vocab_size,
        },
        "search": {
            "diversity_penalty": 0.0,
            "do_sample": bool(getattr(generation, "do_sample", False)),
            "early_stopping": True,
            "length_penalty": 1.0,
            "max_length": config.context_length,
            "min_length": 0,
            "no_repeat_ngram_size": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": True,  # GroupQueryAttention appends to one max_length buffer in place
            "repetition_penalty": float(getattr(generation, "repetition_penalty", None) or 1.0),
            "temperature": float(getattr(generation, "temperature", None) or 1.0),
            "top_k": int(getattr(generation, "top_k", None) or 1),
            "top_p": float(getattr(generation, "top_p", None) or 1.0),
        },
    }


def export_onnx_int4(
    model: EdgeLlamaForCausalLM,
    output_dir: str | os.PathLike,
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN,
    accuracy_level: int = 0,
) -> Path:
    """Writes `model.onnx` (+ `model.onnx.data`), `genai_config.json`, the config and the tokenizer into
    `output_dir`; returns the model path.

    `max_seq_len` is the longest prompt chunk the runner feeds per call (the graph itself takes any
    length up to CL). `accuracy_level` is MatMulNBits' (0: float32 compute, as the host simulation;
    4: int8 activations inside the kernel, faster and approximate).

    ```python
    >>> model.quantize("w4-awq").export("onnx-int4", "smollm2-w4-awq-onnx")
    ```
    """
    from .onnx_parts import save_tokenizer

    check_exportable(model)
    context_length = model.config.context_length
    if not 1 <= max_seq_len <= context_length:
        raise OnnxInt4ExportError(f"max_seq_len must be in [1, context_length={context_length}], got {max_seq_len}")
    if accuracy_level not in (0, 1, 2, 3, 4):
        raise OnnxInt4ExportError(f"accuracy_level must be 0 (float32, as the host), 1, 2, 3 or 4 (int8); got {accuracy_level}")
    output_dir = Path(output_dir)
    grids = int4_grids(model) if model.quantization is not None else {}
    plain = model
    if model.quantization is not None:
        from ..quantization.engines import get_engine

        plain = get_engine(model.quantization.recipe.engine).float_model(model)
    counts = graph.build_decoder(plain, output_dir, grids, accuracy_level=accuracy_level, model_file=MODEL_FILE)
    logger.info("onnx-int4: %d MatMulNBits, %d float MatMul, %.1f MiB of weights",
                counts["MatMulNBits"], counts["MatMul"], counts["data_bytes"] / 2**20)
    (output_dir / GENAI_CONFIG).write_text(json.dumps(genai_config(model), indent=4) + "\n")

    config = model.config
    settings = {k: v for k, v in config.to_dict().items() if k != "quantization_config"}
    export_config = config.__class__.from_dict(settings)
    export_config.edge_llama_export = {
        "target": TARGET,
        "model": MODEL_FILE,
        "genai_config": GENAI_CONFIG,
        "max_seq_len": max_seq_len,
        "accuracy_level": accuracy_level,
        "matmul_nbits": counts["MatMulNBits"],
        "onnxruntime_version": package_version("onnxruntime"),
        "recipe": model.quantization.to_config() if model.quantization is not None else None,
    }
    export_config.save_pretrained(output_dir)
    model.generation_config.save_pretrained(output_dir)
    save_tokenizer(model, output_dir)
    return output_dir / MODEL_FILE

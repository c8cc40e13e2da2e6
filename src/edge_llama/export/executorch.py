"""`export(target="executorch")`: an XNNPACK-lowered `.pte` with the KV cache inside, for phone CPUs.

```
model.pte                 forward(tokens, input_pos) -> logits, plus the runner's metadata methods
config.json               the model; `edge_llama_export` = {target: executorch, recipe, max_seq_len, …}
generation_config.json, tokenizer files
```

Takes a float model (any layout: it is rebuilt in the Linear layout from the same weights) or an
`8da4w` model (its torchao-quantized Linears go into the program as they are, so the `.pte`
computes the host model's arithmetic; XNNPACK runs the int4 group-wise matmuls with dynamic int8
activations). The metadata methods are the ones ExecuTorch's LLM runners read (`get_max_seq_len`,
`get_max_context_len`, `get_vocab_size`, `get_bos_id`, `get_eos_ids`, `use_kv_cache`,
`enable_dynamic_shape`, `get_n_layers`, …), so `llama_main` / `TextLLMRunner` run the file as is.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EdgeLlamaError
from . import package_version

if TYPE_CHECKING:
    from ..modeling_edge_llama import EdgeLlamaForCausalLM

EXECUTORCH_PACKAGE = "executorch==1.5.1"
PROGRAM_FILE = "model.pte"
RECIPES = ("8da4w",)  # besides float models
DEFAULT_MAX_SEQ_LEN = 128
XNNPACK_GROUP_MULTIPLE = 32

logger = logging.getLogger(__name__)  # progress lines; the CLI shows them unless -q


class ExecuTorchExportError(EdgeLlamaError, ValueError):
    """The model cannot go to the executorch target, or executorch is missing."""


def program_model(model: EdgeLlamaForCausalLM) -> EdgeLlamaForCausalLM:
    """The model in the layout the program is built from: Linear projections with fused heads.

    A quantized model must already be in it (its recipe chooses the layout); a float model in the
    NPU layout is rebuilt from its state dict (HF names and shapes, so no mapping is needed).
    """
    config = model.config
    if not (config.use_conv_projections or config.use_split_head_attention):
        return model
    if model.quantization is not None:
        raise ExecuTorchExportError(
            f"recipe {model.quantization.recipe.name} keeps the NPU layout, which the executorch program cannot take"
        )
    linear_config = config.__class__.from_dict({**config.to_dict(), "use_conv_projections": False, "use_split_head_attention": False})
    rebuilt = model.__class__(linear_config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    rebuilt.name_or_path = model.name_or_path
    rebuilt.generation_config = model.generation_config
    return rebuilt.to(model.dtype).eval()


def check_exportable(model: EdgeLlamaForCausalLM) -> None:
    """Raises a clear error for models the target does not take (before any work)."""
    state = model.quantization
    if state is not None and state.recipe.name not in RECIPES:
        targets = {"qnn": "qnn / onnx / qai-hub", "onnx-int4": "onnx-int4", "executorch": "executorch"}
        raise ExecuTorchExportError(
            f"the executorch target takes a float model or one quantized with {', '.join(RECIPES)}; this model is "
            f"quantized with {state.recipe.name}, which is for the {targets.get(state.recipe.target, state.recipe.target)} "
            "target. Quantize the float checkpoint with recipe 8da4w, or export this one to its own target."
        )
    if state is not None:
        for name, block in _weight_groups(model):
            if block % XNNPACK_GROUP_MULTIPLE:
                raise ExecuTorchExportError(
                    f"{name} is quantized in groups of {block}; XNNPACK takes groups that are multiples of "
                    f"{XNNPACK_GROUP_MULTIPLE}. Quantize with a group_size that divides the layer's input width in "
                    f"multiples of {XNNPACK_GROUP_MULTIPLE} (e.g. 32), or per channel."
                )
    try:
        import executorch  # noqa: F401
    except ImportError as error:
        raise ExecuTorchExportError(
            f"the executorch target needs {EXECUTORCH_PACKAGE}: pip install 'edge-llama[executorch]'"
        ) from error


def _weight_groups(model):
    """(name, group size) of every group-wise quantized weight (per-channel ones are skipped)."""
    from torchao.quantization import IntxUnpackedToInt8Tensor

    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, IntxUnpackedToInt8Tensor) and weight.block_size[-1] != weight.shape[-1]:
            yield f"{name}.weight", weight.block_size[-1]


def runner_metadata(model: EdgeLlamaForCausalLM, max_seq_len: int) -> dict:
    """The constant methods ExecuTorch's LLM runners read from a `.pte`."""
    config = model.config
    eos = config.eos_token_id if config.eos_token_id is not None else []
    eos = list(eos) if isinstance(eos, (list, tuple)) else [eos]
    generation_eos = getattr(model.generation_config, "eos_token_id", None)
    for token in generation_eos if isinstance(generation_eos, (list, tuple)) else [generation_eos]:
        if token is not None and token not in eos:
            eos.append(token)
    return {
        "get_max_seq_len": max_seq_len,
        "get_max_context_len": config.context_length,
        "get_vocab_size": config.vocab_size,
        "get_n_layers": config.num_hidden_layers,
        "get_bos_id": config.bos_token_id if config.bos_token_id is not None else 0,
        "get_eos_ids": eos,
        "use_kv_cache": True,
        "use_sdpa_with_kv_cache": True,
        "enable_dynamic_shape": True,
    }


def lower_program(model: EdgeLlamaForCausalLM, max_seq_len: int):
    """Traces the program and lowers it with XNNPACK; returns the ExecuTorch program manager."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass
    from executorch.exir.passes.sym_shape_eval_pass import ConstraintBasedSymShapeEvalPass

    from .executorch_program import EdgeLlamaProgram, load_custom_ops

    load_custom_ops()
    program = EdgeLlamaProgram(program_model(model), max_seq_len).eval()
    tokens = torch.zeros(1, min(2, max_seq_len), dtype=torch.long)
    input_pos = torch.zeros(1, dtype=torch.long)
    dynamic_shapes = ({1: torch.export.Dim("seq_len", min=1, max=max_seq_len)}, None)
    started = time.perf_counter()
    with torch.no_grad():
        exported = torch.export.export(program, (tokens, input_pos), dynamic_shapes=dynamic_shapes, strict=False)
    logger.info("executorch: traced in %.1f s; lowering with XNNPACK", time.perf_counter() - started)
    started = time.perf_counter()
    edge = to_edge_transform_and_lower(
        exported,
        partitioner=[XnnpackPartitioner()],
        compile_config=EdgeCompileConfig(_check_ir_validity=False),
        constant_methods=runner_metadata(model, max_seq_len),
    )
    logger.info("executorch: lowered in %.1f s", time.perf_counter() - started)
    return edge.to_executorch(
        ExecutorchBackendConfig(
            extract_delegate_segments=True,
            do_quant_fusion_and_const_prop=True,
            memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False),
            sym_shape_eval_pass=ConstraintBasedSymShapeEvalPass(),
        )
    )


def export_executorch(
    model: EdgeLlamaForCausalLM, output_dir: str | os.PathLike, max_seq_len: int = DEFAULT_MAX_SEQ_LEN
) -> Path:
    """Writes `model.pte` (XNNPACK, cache inside, prefill of up to `max_seq_len` tokens per call),
    the config and the tokenizer into `output_dir`; returns the `.pte` path."""
    from .onnx_parts import save_tokenizer

    check_exportable(model)
    context_length = model.config.context_length
    if not 1 <= max_seq_len <= context_length:
        raise ExecuTorchExportError(f"max_seq_len must be in [1, context_length={context_length}], got {max_seq_len}")
    output_dir = Path(output_dir)
    manager = lower_program(model, max_seq_len)
    path = output_dir / PROGRAM_FILE
    with open(path, "wb") as handle:
        manager.write_to_file(handle)

    config = model.config
    settings = {k: v for k, v in config.to_dict().items() if k != "quantization_config"}
    export_config = config.__class__.from_dict(settings)
    export_config.edge_llama_export = {
        "target": "executorch",
        "program": PROGRAM_FILE,
        "max_seq_len": max_seq_len,
        "backend": "xnnpack",
        "executorch_version": package_version("executorch"),
        "recipe": model.quantization.to_config() if model.quantization is not None else None,
        "metadata": runner_metadata(model, max_seq_len),
    }
    export_config.save_pretrained(output_dir)
    model.generation_config.save_pretrained(output_dir)
    save_tokenizer(model, output_dir)
    return path

"""From a float edge model and a recipe to a quantized edge model that still runs on the host."""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..errors import EdgeLlamaError
from .engines import get_engine
from .recipe import Recipe, load_recipe

if TYPE_CHECKING:
    from ..modeling_edge_llama import EdgeLlamaForCausalLM

logger = logging.getLogger(__name__)

QUANT_METHOD = "edge_llama"


@dataclass
class QuantizationState:
    """What a quantized edge model carries besides its weights."""

    recipe: Recipe
    calibration: dict = field(default_factory=dict)
    use_seq_mse: bool = False
    seconds: float | None = None
    base_model: str | None = None
    license: str | None = None
    perplexity: dict | None = None  # {"float", "quantized", "text", "tokens"} when measured (model card)
    handle: Any = None  # engine-specific: encodings, a QuantSim, …

    def to_config(self) -> dict:
        """The `quantization_config` stored in `config.json`."""
        return {
            "quant_method": QUANT_METHOD,
            "engine": self.recipe.engine,
            "recipe": self.recipe.name,
            "weight_bits": self.recipe.weights.bits,
            "activation_bits": self.recipe.activations.bits if self.recipe.activations else None,
            "calibration": dict(self.calibration),
            "use_seq_mse": self.use_seq_mse,
            "quantization_seconds": self.seconds,
            "base_model": self.base_model,
            "license": self.license,
            **({"perplexity": dict(self.perplexity)} if self.perplexity else {}),
            "recipe_spec": self.recipe.to_dict(),
        }


def quantize_model(
    model: EdgeLlamaForCausalLM,
    recipe: str | os.PathLike | Recipe = "w4a16",
    calibration: str | os.PathLike | None = None,
    num_samples: int | None = None,
    sequence_length: int | None = None,
    use_seq_mse: bool = False,
    tokenizer=None,
    **options,
) -> EdgeLlamaForCausalLM:
    """See `EdgeLlamaForCausalLM.quantize`.

    The quantized model shares `model`'s weight storage unless the engine rewrites weights in place
    (its `writes_weights`; an engine that does not say is assumed to), so quantizing needs no second
    copy of the weights. `model` itself is never changed and stays usable; a later in-place change of
    its weights (say, fine-tuning it) shows through in the quantized model too: quantize a
    `copy.deepcopy(model)` if you mean to do that.
    """
    recipe = load_recipe(recipe)
    if model.quantization is not None:
        raise EdgeLlamaError(
            f"this model is already quantized ({model.quantization.recipe.name}); quantize the float model instead."
        )
    engine = get_engine(recipe.engine)
    quantized = copy_with_layout(model, recipe, share_weights=not _writes_weights(engine, recipe, options))
    batches: list[torch.Tensor] = []
    calibration_info: dict = {}
    if engine.needs_calibration:
        from ..checkpoints import load_tokenizer
        from ..data import calibration_batches
        from ..data.text import DEFAULT_CORPUS

        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model.name_or_path)
        num_samples = num_samples or recipe.option("calibration_samples", 20)
        sequence_length = sequence_length or min(model.config.context_length, recipe.option("calibration_sequence_length", 512))
        batches = calibration_batches(tokenizer, calibration, num_samples, sequence_length)
        calibration_info = {
            "source": DEFAULT_CORPUS if calibration is None else str(calibration),  # what load_corpus names it
            "num_samples": num_samples,
            "sequence_length": sequence_length,
            "tokens": num_samples * sequence_length,
        }
    quantized.quantization = QuantizationState(
        recipe, calibration_info, use_seq_mse, base_model=getattr(model, "base_model_id", None), license=getattr(model, "license", None)
    )
    started = time.perf_counter()
    engine.quantize(quantized, recipe, batches, use_seq_mse=use_seq_mse, **options)
    quantized.quantization.seconds = time.perf_counter() - started
    quantized.config.quantization_config = quantized.quantization.to_config()
    logger.info("Quantized with %s in %.1f s", recipe.name, quantized.quantization.seconds)
    return quantized.eval()


def copy_with_layout(model: EdgeLlamaForCausalLM, recipe: Recipe, share_weights: bool = False) -> EdgeLlamaForCausalLM:
    """A copy of `model` in the recipe's layout; lm_head is untied if only it is quantized.

    With `share_weights` the copy's weights are views of `model`'s (a layout change is a reshape or
    a split into heads, both views; merging heads makes new tensors): no second copy in memory, for an
    engine that never writes into weights. Without it every weight is cloned. An lm_head untied here
    is cloned either way (the folder stores it as a tensor of its own).
    """
    config = copy.deepcopy(model.config)
    for switch, value in recipe.layout.items():
        setattr(config, switch, value)
    if config.tie_word_embeddings and recipe.weights_for("lm_head") != recipe.embeddings:
        config.tie_word_embeddings = False  # lm_head gets its own grid; the embedding keeps its own
    with torch.device("meta"):
        copied = type(model)(config)
    if share_weights and _same_layout(model.config, config):  # edge names: no round trip through HF names
        state = {name: tensor.detach() for name, tensor in model.named_parameters(remove_duplicate=False)}
    else:  # HF names: splitting into heads on load makes views; merging heads (`cat`) makes new tensors
        state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    if not share_weights:
        state = {name: tensor.clone() for name, tensor in state.items()}
    tied = model.lm_head.weight is model.model.embed_tokens.weight
    if "lm_head.weight" not in state or (share_weights and tied and not config.tie_word_embeddings):
        state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()  # untied: a table of its own
    copied.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        copied.lm_head.weight = copied.model.embed_tokens.weight
    copied.generation_config = copy.deepcopy(model.generation_config)
    copied.name_or_path = model.name_or_path
    copied.base_model_id, copied.license = getattr(model, "base_model_id", None), getattr(model, "license", None)
    return copied


def _same_layout(source, target) -> bool:
    return all(getattr(source, switch) == getattr(target, switch) for switch in ("use_split_head_attention", "use_conv_projections"))


def _writes_weights(engine, recipe: Recipe, options: dict) -> bool:
    """Whether `engine` rewrites weights in place on this recipe; an engine that does not say is assumed to."""
    writes = getattr(engine, "writes_weights", True)
    return bool(writes(recipe, options) if callable(writes) else writes)


def copy_plain(model: EdgeLlamaForCausalLM, replacements: dict[str, torch.Tensor]) -> EdgeLlamaForCausalLM:
    """A plain (unquantized) edge model sharing `model`'s weights, with `replacements` by name."""
    with torch.device("meta"):
        plain = type(model)(model.config)
    wanted = dict(plain.named_parameters(remove_duplicate=False))  # not the simulators' quantizer parameters
    state = {
        name: replacements.get(name, tensor.detach())
        for name, tensor in model.named_parameters(remove_duplicate=False)
        if name in wanted
    }
    plain.load_state_dict(state, strict=True, assign=True)
    if model.lm_head.weight is model.model.embed_tokens.weight:
        plain.lm_head.weight = plain.model.embed_tokens.weight
    plain.generation_config = model.generation_config
    return plain.eval()

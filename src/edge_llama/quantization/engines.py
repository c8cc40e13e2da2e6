"""The engines behind recipes. Each one quantizes a model, reports its encodings, and restores a
quantized model from float weights plus encodings (bit-identically), so one folder format serves all.
Heavy engines are imported only when a recipe asks for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

from .affine import fake_quantize, param_encoding
from .encodings import Encodings

if TYPE_CHECKING:
    from ..modeling_edge_llama import EdgeLlamaForCausalLM
    from .recipe import Recipe


class QuantizationEngine(Protocol):
    needs_calibration: bool

    def quantize(self, model: EdgeLlamaForCausalLM, recipe: Recipe, batches: list[torch.Tensor], **options) -> None:
        """Quantizes `model` in place (it is already a private copy in the recipe's layout)."""

    def encodings(self, model: EdgeLlamaForCausalLM) -> Encodings:
        """The encodings that, with the model's current weights, describe the quantized model."""

    def restore(self, model: EdgeLlamaForCausalLM, recipe: Recipe, encodings: Encodings) -> None:
        """Turns a float model holding the saved weights back into the quantized model."""

    def float_model(self, model: EdgeLlamaForCausalLM) -> EdgeLlamaForCausalLM:
        """A plain edge model with the float weights to save (what `restore` starts from)."""


_ENGINES = {
    "rtn": "edge_llama.quantization.engines:RoundToNearest",
    "aimet": "edge_llama.quantization.aimet_engine:AimetEngine",
    "torchao": "edge_llama.quantization.torchao_engine:TorchaoEngine",
    "awq": "edge_llama.quantization.awq_engine:AwqEngine",
}


def get_engine(name: str) -> QuantizationEngine:
    module_name, class_name = _ENGINES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        from ..errors import EdgeLlamaError

        raise EdgeLlamaError(
            f"the {name!r} quantization engine needs a package that is not installed ({error.name}). "
            "Install the optional engines with: EDGE_LLAMA_EXTRAS=qnn,executorch bash scripts/setup.sh"
        ) from error
    return getattr(module, class_name)()


def quantizable_weights(model: nn.Module):
    """`(module name, module)` of every Linear/Conv2d projection, in model order."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            yield name, module


class RoundToNearest:
    """Weight-only round-to-nearest on min-max grids: the naive baseline every method must beat."""

    needs_calibration = False

    def quantize(self, model, recipe, batches, **options) -> None:
        encodings = Encodings(quantizer_args={"quant_scheme": "rtn-minmax", "param_bitwidth": recipe.weights.bits})
        with torch.no_grad():
            for name, module in quantizable_weights(model):
                scheme = recipe.weights_for(name)
                if scheme is None:
                    continue
                block = scheme.block_for(module.weight[0].numel(), name)
                dequantized, scale, offset = fake_quantize(module.weight, scheme, block)
                module.weight.copy_(dequantized)
                encodings.params[f"{name}.weight"] = param_encoding(f"{name}.weight", scheme, block, scale, offset)
        model.quantization.handle = encodings

    def encodings(self, model) -> Encodings:
        return model.quantization.handle

    def restore(self, model, recipe, encodings) -> None:
        model.quantization.handle = encodings  # the saved weights are already on their grids

    def float_model(self, model):
        return model

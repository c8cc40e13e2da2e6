"""`8da4w` through torchao: int4 group-wise weights with dynamic int8 per-token activations.

The quantized weights are torchao `IntxUnpackedToInt8Tensor`s. Saved, they become their dequantized
float values plus PER_BLOCK encodings; restoring recomputes the integer codes exactly (each float is
`scale * code`, so dividing by the scale and rounding gives the code back) and rebuilds the same
tensors, so the reloaded model computes bit-identical logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torchao.quantization import (
    Int8DynamicActivationIntxWeightConfig,
    IntxUnpackedToInt8Tensor,
    IntxWeightOnlyConfig,
    MappingType,
    PerAxis,
    PerGroup,
    quantize_,
)

from .encodings import Encodings, TensorEncoding
from .recipe import Granularity, WeightScheme

_ACTIVATION_QUANTIZATION = "int8_asym_per_token"


def _granularity(scheme: WeightScheme, block: int | None):
    return PerGroup(block) if block else PerAxis(0)


def _scale_dtype(scheme: WeightScheme | None) -> torch.dtype | None:
    """XNNPACK's group-wise int4 kernels keep their scales in bfloat16. With float32 scales on the host,
    a SmolLM2-shaped linear's `.pte` output differed by 0.25 % of its range (7e-7 with bfloat16), and
    SmolLM2's top-1 agreement with the `.pte` was 0.865 (0.904 with bfloat16)."""
    if scheme is None or scheme.scale_dtype == "float32":
        return None
    return getattr(torch, scheme.scale_dtype)


def _target_dtype(bits: int) -> torch.dtype:
    return getattr(torch, f"int{bits}")


class TorchaoEngine:
    needs_calibration = False  # weights round to nearest; activations are quantized on the fly
    writes_weights = False  # quantize_ puts new tensors in place of the float weights, which it only reads

    def quantize(self, model, recipe, batches, **options) -> None:
        for name, module in list(model.named_modules()):
            if not isinstance(module, nn.Linear) or (scheme := recipe.weights_for(name)) is None:
                continue
            block = scheme.block_for(module.in_features, name)
            config = Int8DynamicActivationIntxWeightConfig(
                weight_dtype=_target_dtype(scheme.bits),
                weight_granularity=_granularity(scheme, block),
                weight_mapping_type=MappingType.SYMMETRIC if scheme.symmetric else MappingType.ASYMMETRIC,
                # Codes are chosen against the scale the runtime will hold, so host and device agree.
                weight_scale_dtype=_scale_dtype(scheme),
            )
            quantize_(module, config)
        if recipe.embeddings is not None:
            embedding = model.model.embed_tokens
            scheme = recipe.embeddings
            block = scheme.block_for(embedding.embedding_dim, "model.embed_tokens")
            quantize_(
                embedding,
                IntxWeightOnlyConfig(
                    weight_dtype=_target_dtype(scheme.bits),
                    granularity=_granularity(scheme, block),
                    mapping_type=MappingType.SYMMETRIC if scheme.symmetric else MappingType.ASYMMETRIC,
                ),
                filter_fn=lambda module, fqn: isinstance(module, nn.Embedding),
            )

    def encodings(self, model) -> Encodings:
        encodings = Encodings(quantizer_args={"quant_scheme": "torchao-8da4w", "activation": _ACTIVATION_QUANTIZATION})
        for name, tensor in _quantized_weights(model):
            bits = int(str(tensor.target_dtype).removeprefix("torch.int"))
            shift = 2 ** (bits - 1)  # torchao codes are signed; AIMET's are unsigned
            block = tensor.block_size[-1]
            per_channel = block == tensor.shape[-1]
            encodings.params[name] = TensorEncoding(
                name=name,
                enc_type="PER_CHANNEL" if per_channel else "PER_BLOCK",
                bw=bits,
                is_sym=bool((tensor.zero_point == 0).all()),
                scale=tensor.scale.float().flatten().tolist(),
                offset=(-shift - tensor.zero_point.to(torch.int64)).flatten().tolist(),
                block_size=None if per_channel else block,
            )
        return encodings

    def float_model(self, model):
        """A plain copy whose quantized weights are replaced by their dequantized values."""
        from .quantize import copy_plain

        return copy_plain(model, {name: tensor.dequantize() for name, tensor in _quantized_weights(model)})

    def restore(self, model, recipe, encodings) -> None:
        for name, encoding in encodings.params.items():
            module_name, _ = name.rsplit(".", 1)
            module = model.get_submodule(module_name)
            weight = module.weight.detach()
            out_channels, width = weight.shape
            block = encoding.block_size or width
            scale = torch.tensor(encoding.scale, dtype=torch.float32).reshape(out_channels, width // block)
            shift = 2 ** (encoding.bw - 1)
            zero_point = (-shift - torch.tensor(encoding.offset, dtype=torch.int64)).reshape(scale.shape)
            codes = torch.round(weight.float().reshape(out_channels, -1, block) / scale.unsqueeze(-1)).reshape(weight.shape)
            codes = (codes + zero_point.repeat_interleave(block, dim=1)).to(torch.int8)
            scale_dtype = None if isinstance(module, nn.Embedding) else _scale_dtype(recipe.weights_for(module_name))
            quantized = IntxUnpackedToInt8Tensor(
                codes,
                scale.to(scale_dtype or weight.dtype),
                zero_point.to(torch.int8),
                _target_dtype(encoding.bw),
                (1, block),
                weight.dtype,
                None if isinstance(module, nn.Embedding) else _ACTIVATION_QUANTIZATION,
            )
            module.weight = nn.Parameter(quantized, requires_grad=False)


def _quantized_weights(model):
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, IntxUnpackedToInt8Tensor):
            yield f"{name}.weight", weight


__all__ = ["TorchaoEngine", "Granularity"]

"""`w4-awq`: activation-aware weight scaling (AWQ), then uint4 asymmetric group-wise round-to-nearest.

For each group of projections that read the same activation, AWQ searches one exponent `alpha` so
that scaling input channel `c` by `s_c = mean|x_c| ** alpha` (folded into the preceding RMSNorm or
projection, so the float model is unchanged) minimizes the quantized output error on calibration
data. Salient channels get more of the 4-bit grid. A per-group clipping search follows. The result is
a float model whose projections sit exactly on their grids, plus PER_BLOCK encodings.

torchao 0.18's AWQ is a prototype that ties the result to its own tensor subclass and kernels; this
is a small standalone implementation on our own grids, so the saved form is the same as every recipe's.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from tqdm.auto import tqdm

from .affine import fake_quantize, param_encoding
from .encodings import Encodings
from .engines import quantizable_weights

logger = logging.getLogger(__name__)


class AwqEngine:
    needs_calibration = True

    def quantize(self, model, recipe, batches, progress: bool = True, **options) -> None:
        if model.config.use_conv_projections or model.config.use_split_head_attention:
            raise ValueError("w4-awq runs on the Linear, fused-head layout; set it in the recipe's layout")
        grid = int(options.get("awq_grid", recipe.option("awq_grid", 20)))
        max_tokens = int(options.get("awq_max_tokens", recipe.option("awq_max_tokens", 2048)))
        with torch.no_grad():
            inputs = _capture_inputs(model, tqdm(batches, desc="calibration", unit="seq", disable=not progress), max_tokens)
            for index, layer in enumerate(tqdm(model.model.layers, desc="AWQ scales", disable=not progress)):
                self._scale_layer(model, recipe, layer, index, inputs, grid)
            encodings = Encodings(quantizer_args={"quant_scheme": "awq", "param_bitwidth": recipe.weights.bits})
            for name, module in quantizable_weights(model):
                scheme = recipe.weights_for(name)
                if scheme is None:
                    continue
                block = scheme.block_for(module.in_features, name)
                dequantized, scale, offset = fake_quantize(module.weight, scheme, block)
                module.weight.copy_(dequantized)
                encodings.params[f"{name}.weight"] = param_encoding(f"{name}.weight", scheme, block, scale, offset)
        model.quantization.handle = encodings

    def _scale_layer(self, model, recipe, layer, index, inputs, grid) -> None:
        attention, mlp = layer.self_attn, layer.mlp
        prefix = f"model.layers.{index}."
        scaled = (
            # q/k/v read input_layernorm's output; gate/up read post_attention_layernorm's.
            ("attention", (attention.q_proj, attention.k_proj, attention.v_proj), layer.input_layernorm.weight, None),
            ("mlp", (mlp.gate_proj, mlp.up_proj), layer.post_attention_layernorm.weight, None),
            # down_proj reads act(gate) * up, which is linear in up_proj's rows.
            ("down", (mlp.down_proj,), None, mlp.up_proj.weight),
        )
        for key, projections, norm_weight, previous_rows in scaled:
            schemes = [recipe.weights_for(prefix + _relative_name(layer, p)) for p in projections]
            if any(scheme is None for scheme in schemes):
                continue
            x = inputs[(index, key)]
            scale = _search_scale(x, [p.weight for p in projections], schemes[0], grid)
            if norm_weight is not None:
                norm_weight.div_(scale)
            else:
                previous_rows.div_(scale.view(-1, 1))
            for projection in projections:
                projection.weight.mul_(scale)
            inputs[(index, key)] = x / scale
        for key, projection in (("attention", attention.v_proj), ("mlp", mlp.gate_proj), ("mlp", mlp.up_proj), ("down", mlp.down_proj)):
            scheme = recipe.weights_for(prefix + _relative_name(layer, projection))
            if scheme is not None:
                projection.weight.copy_(_search_clip(inputs[(index, key)], projection.weight, scheme, grid))

    def encodings(self, model) -> Encodings:
        return model.quantization.handle

    def restore(self, model, recipe, encodings) -> None:
        model.quantization.handle = encodings  # scaled, clipped and rounded weights were saved as they are

    def float_model(self, model):
        return model


def _relative_name(layer: nn.Module, module: nn.Module) -> str:
    return next(name for name, candidate in layer.named_modules() if candidate is module)


def _capture_inputs(model, batches, max_tokens: int) -> dict:
    """Inputs `(tokens, features)` of each layer's q_proj, gate_proj and down_proj on the float model."""
    store, hooks = {}, []
    for index, layer in enumerate(model.model.layers):
        for key, module in (("attention", layer.self_attn.q_proj), ("mlp", layer.mlp.gate_proj), ("down", layer.mlp.down_proj)):
            store[(index, key)] = []

            def record(module, args, output, key=(index, key)):
                store[key].append(args[0].reshape(-1, args[0].shape[-1]).detach().clone())

            hooks.append(module.register_forward_hook(record))
    try:
        for batch in batches:
            model(batch, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    return {key: torch.cat(values)[:max_tokens].float() for key, values in store.items()}


def _search_scale(x: torch.Tensor, weights: list[nn.Parameter], scheme, grid: int) -> torch.Tensor:
    """The per-input-channel scale `mean|x| ** alpha` with the alpha that minimizes the output error."""
    weight = torch.cat([w.detach().float() for w in weights])
    block = scheme.block_for(weight.shape[1])
    reference = x @ weight.T
    magnitude = x.abs().mean(0)
    best_loss, best_scale = float("inf"), torch.ones_like(magnitude)
    for step in range(grid):
        scale = magnitude.pow(step / grid).clamp(min=1e-4)
        scale = scale / (scale.max() * scale.min()).sqrt()
        quantized = fake_quantize(weight * scale, scheme, block)[0] / scale
        loss = (x @ quantized.T - reference).pow(2).mean().item()
        if loss < best_loss:
            best_loss, best_scale = loss, scale
    return best_scale.to(weights[0].dtype)


def _search_clip(x: torch.Tensor, weight: torch.Tensor, scheme, grid: int, max_shrink: float = 0.5, tokens: int = 512) -> torch.Tensor:
    """Shrinks each (row, group) range to the ratio that minimizes that group's output error."""
    x = x[:: max(1, x.shape[0] // tokens)][:tokens]
    rows, width = weight.shape
    block = scheme.block_for(width) or width
    groups = width // block
    x_groups = x.reshape(-1, groups, block)
    w = weight.detach().float().reshape(rows, groups, block)
    reference = torch.einsum("tgk,rgk->rgt", x_groups, w)
    high, low = w.amax(-1, keepdim=True), w.amin(-1, keepdim=True)
    best_error = torch.full(high.shape, float("inf"))
    best = w.clone()
    for step in range(int(max_shrink * grid)):
        ratio = 1 - step / grid
        clipped = w.clamp(low * ratio, high * ratio)
        quantized = fake_quantize(clipped.reshape(rows, width), scheme, block)[0].reshape(w.shape)
        error = (torch.einsum("tgk,rgk->rgt", x_groups, quantized) - reference).pow(2).mean(-1, keepdim=True)
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best = torch.where(better, clipped, best)
    return best.reshape(rows, width).to(weight.dtype)

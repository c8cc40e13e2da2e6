"""GPTQ rounding: same grid as round-to-nearest, smaller output error; exact through aimet's quantizers."""

from __future__ import annotations

import torch

from edge_llama.quantization.gptq import collect_hessians, gptq_round, mse_scales

from ..conftest import edge_from, tiny_llama


def correlated_layer(seed=0):
    torch.manual_seed(seed)
    weight = torch.randn(48, 96)
    inputs = torch.randn(2048, 96) @ (torch.eye(96) + 0.4 * torch.randn(96, 96))
    hessian = 2 * inputs.double().T @ inputs.double() / inputs.shape[0]
    return weight, inputs, hessian


def output_error(inputs, weight, rounded):
    return ((inputs @ (weight - rounded).T).pow(2).mean() / (inputs @ weight.T).pow(2).mean()).item()


def test_gptq_stays_on_the_grid_and_beats_nearest_rounding():
    weight, inputs, hessian = correlated_layer()
    scale = mse_scales(weight, bits=4)
    nearest = torch.clamp(torch.round(weight / scale[:, None]), -8, 7) * scale[:, None]
    rounded = gptq_round(weight, hessian, scale, bits=4).float()
    codes = rounded / scale[:, None]
    assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.round().min() >= -8 and codes.round().max() <= 7
    assert output_error(inputs, weight, rounded) < 0.7 * output_error(inputs, weight, nearest)


def test_mse_scales_clip_no_more_than_half():
    weight, _, _ = correlated_layer()
    scale = mse_scales(weight, bits=4)
    absmax = weight.abs().amax(dim=1) / 7
    assert torch.all(scale <= absmax + 1e-7) and torch.all(scale >= 0.5 * absmax)


def test_hessians_are_collected_from_conv_inputs():
    model = edge_from(tiny_llama(), context_length=64, ar_lengths=[16, 1])
    module = model.model.layers[0].mlp.down_proj
    seen = []
    module.register_forward_pre_hook(lambda m, args: seen.append(args[0].permute(0, 2, 3, 1).reshape(-1, args[0].shape[1])))
    hessians = collect_hessians(model, {"down": module}, lambda: model(torch.randint(3, 160, (1, 20))))
    rows = torch.cat(seen).double()
    assert torch.allclose(hessians["down"], 2 * rows.T @ rows / rows.shape[0])


def test_w4a16_with_gptq_rounding_keeps_weights_on_the_frozen_grids(default_tokenizer, tmp_path):
    from edge_llama import EdgeLlamaForCausalLM

    reference = tiny_llama(vocab_size=49152, hidden_size=128, intermediate_size=256)
    model = edge_from(reference, context_length=64, ar_lengths=[16, 1])
    quantized = model.quantize("w4a16", tokenizer=default_tokenizer, num_samples=2, sequence_length=32,
                               weight_rounding="gptq", progress=False)
    assert quantized.config.quantization_config["recipe_spec"]["options"]["weight_rounding"] == "gptq"
    for module in (quantized.model.layers[0].self_attn.q_proj[0], quantized.model.layers[1].mlp.down_proj, quantized.lm_head):
        weight = module.weight.detach()
        assert torch.equal(module.param_quantizers["weight"](weight), weight)
    ids = torch.randint(3, 49152, (1, 24))
    quantized.save_pretrained(tmp_path / "gptq")
    again = EdgeLlamaForCausalLM.from_pretrained(tmp_path / "gptq")
    with torch.no_grad():
        assert torch.equal(again(ids).logits, quantized(ids).logits)

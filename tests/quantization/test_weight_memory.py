"""Quantizing holds the weights once: the quantized copy shares the float model's storage where the
engine never writes into weights, the float model is never changed, and layers executed on another
device come back to their own host tensors. Also: which GPU runs which block (accelerate's map)."""

from __future__ import annotations

import pytest
import torch

from edge_llama.quantization import quantize as quantize_module
from edge_llama.quantization.aimet_engine import AimetEngine
from edge_llama.quantization.layerwise import LayerwiseCalibrator, executing_on, plan_block_devices
from edge_llama.quantization.quantize import QuantizationState, copy_with_layout
from edge_llama.quantization.recipe import load_recipe

from .test_layerwise import calibration_tokens, encodings_json, quantize, tiny_float_model


def storages(model) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in model.parameters()}


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters(remove_duplicate=False)}


def assert_unchanged(model, before: dict[str, torch.Tensor]) -> None:
    after = dict(model.named_parameters(remove_duplicate=False))
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name


def test_a_shared_copy_holds_views_of_the_float_weights():
    model = tiny_float_model()  # tied embeddings; w4a16 unties lm_head
    recipe = load_recipe("w4a16")
    shared = copy_with_layout(model, recipe, share_weights=True)
    own = storages(model)
    embedding = shared.model.embed_tokens.weight
    assert all(p.untyped_storage().data_ptr() in own for p in shared.parameters() if p is not shared.lm_head.weight)
    assert shared.lm_head.weight.untyped_storage().data_ptr() not in own  # untied: a table of its own
    assert torch.equal(shared.lm_head.weight, embedding)
    assert not storages(copy_with_layout(model, recipe)) & own  # the default still clones
    ids = torch.tensor([[1, 5, 9, 17]])
    assert torch.equal(shared(ids).logits, model(ids).logits)


def test_a_layout_change_shares_by_views():
    """Fused linear → split heads and 1x1 convolutions: chunks and reshapes of the same storage."""
    from ..conftest import edge_from, tiny_llama

    fused = edge_from(tiny_llama(), context_length=64, ar_lengths=[16, 1],
                      use_split_head_attention=False, use_conv_projections=False)
    shared = copy_with_layout(fused, load_recipe("w4a16"), share_weights=True)
    assert shared.config.use_split_head_attention and shared.config.use_conv_projections
    q_heads = shared.model.layers[0].self_attn.q_proj
    assert {p.untyped_storage().data_ptr() for p in q_heads.parameters()} == {
        fused.model.layers[0].self_attn.q_proj.weight.untyped_storage().data_ptr()
    }


def test_an_engine_that_writes_weights_gets_a_copy(default_tokenizer):
    model = tiny_float_model()
    before = snapshot(model)
    quantized = model.quantize("w4-rtn", tokenizer=default_tokenizer, progress=False)  # rounds weights in place
    assert_unchanged(model, before)
    assert not storages(quantized) & storages(model)


def test_torchao_shares_and_leaves_the_float_model_alone():
    from ..conftest import edge_from, tiny_llama

    model = edge_from(tiny_llama(hidden_size=64, intermediate_size=128), context_length=64, ar_lengths=[16, 1])
    before = snapshot(model)
    shared = []
    original = quantize_module.copy_with_layout

    def spy(*args, **kwargs):
        shared.append(kwargs.get("share_weights"))
        return original(*args, **kwargs)

    quantize_module.copy_with_layout = spy
    try:
        model.quantize("8da4w")
    finally:
        quantize_module.copy_with_layout = original
    assert shared == [True]
    assert_unchanged(model, before)


def test_shared_weights_give_the_copied_encodings(monkeypatch, default_tokenizer):
    """aimet's layer-wise path never writes into weights: declared so, the float model is shared, left
    unchanged, and the encodings are those of a private copy."""
    model = tiny_float_model()
    batches = calibration_tokens()
    copied = quantize(model, batches, layerwise=True, calibration_batch_size=2)
    before = snapshot(model)
    monkeypatch.setattr(AimetEngine, "writes_weights", False, raising=False)
    monkeypatch.setattr("edge_llama.data.calibration_batches", lambda *args: batches)
    shared = model.quantize("w4a16", tokenizer=default_tokenizer, layerwise=True, calibration_batch_size=2, progress=False)
    assert_unchanged(model, before)
    assert shared.model.layers[0].mlp.up_proj.weight.untyped_storage().data_ptr() in storages(model)
    assert encodings_json(shared) == encodings_json(copied)


def test_unchanged_parameters_come_back_to_their_home_tensors():
    layer = torch.nn.Linear(8, 4)
    homes = {name: p.untyped_storage().data_ptr() for name, p in layer.named_parameters()}
    with executing_on(layer, torch.device("meta"), torch.device("cpu")):
        assert layer.weight.device.type == "meta"
    assert {name: p.untyped_storage().data_ptr() for name, p in layer.named_parameters()} == homes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_parameter_written_on_the_device_comes_back_as_written():
    layer = torch.nn.Linear(8, 4)
    home_weight, home_bias = layer.weight.detach().clone(), layer.bias.untyped_storage().data_ptr()
    with executing_on(layer, torch.device("cuda"), torch.device("cpu")), torch.no_grad():
        layer.weight.mul_(0)
    assert layer.weight.device.type == "cpu" and layer.bias.untyped_storage().data_ptr() == home_bias
    assert torch.equal(layer.weight, torch.zeros_like(home_weight))


def test_accelerate_balances_the_layers_over_two_gpus():
    model = copy_with_layout(tiny_float_model(layers=4), load_recipe("w4a16"))  # lm_head untied, as calibrated
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    plan = plan_block_devices(model, {0: size, 1: size})  # GPU indices: no GPU needed to plan
    layers = [plan[f"model.layers.{i}"] for i in range(4)]
    assert layers == sorted(layers) and set(layers) == {0, 1}  # contiguous halves
    assert plan["model.embed_tokens"] == 0 and plan["lm_head"] == 1
    assert set(plan_block_devices(model, {0: size}).values()) == {0}


def test_one_device_runs_every_block():
    model = copy_with_layout(tiny_float_model(layers=3), load_recipe("w4a16"))
    calibrator = LayerwiseCalibrator(model, calibration_tokens(), device="cpu", progress=False)
    assert set(calibrator.block_devices.values()) == {torch.device("cpu")}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_layers_run_on_the_gpu_come_back_to_their_host_weights():
    """Layer-wise on a GPU: the host keeps one copy of each weight (the one it had), not a copy back."""
    recipe = load_recipe("w4a16")
    model = copy_with_layout(tiny_float_model(), recipe)
    model.quantization = QuantizationState(recipe)
    before = {name: (p.untyped_storage().data_ptr(), p.detach().clone()) for name, p in model.named_parameters()}
    AimetEngine().quantize(model, recipe, calibration_tokens(), progress=False, layerwise=True, calibration_batch_size=2,
                           device="cuda")
    for name, param in model.named_parameters():
        if name in before:
            pointer, value = before[name]
            assert param.device.type == "cpu" and param.untyped_storage().data_ptr() == pointer, name
            assert torch.equal(param, value), name
    assert model.quantization.layerwise_report.layer_devices == ["cuda:0"] * len(model.model.layers)

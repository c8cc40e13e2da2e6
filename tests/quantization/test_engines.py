"""Every recipe on a tiny model: it quantizes, stays close to float, and round-trips bit for bit."""

from __future__ import annotations

import pytest
import torch

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.quantization.encodings import Encodings
from edge_llama.quantization.engines import get_engine, quantizable_weights

from ..conftest import edge_from, relative_error, tiny_llama

RECIPES = ["w4-rtn", "8da4w", "w4-awq", "w4a16", "w4a16-lpbq", "w8a16"]
QNN = {"w4a16", "w4a16-lpbq", "w8a16"}


@pytest.fixture(scope="module")
def float_model():
    # The real tokenizer's vocabulary, so calibration runs on real text; hidden 128 so LPBQ blocks of 64 fit.
    reference = tiny_llama(vocab_size=49152, hidden_size=128, intermediate_size=256, tie_word_embeddings=True)
    return edge_from(reference, context_length=64, ar_lengths=[16, 1])


@pytest.fixture(scope="module")
def quantized(float_model, default_tokenizer):
    cache = {}

    def get(recipe):
        if recipe not in cache:
            cache[recipe] = float_model.quantize(
                recipe, tokenizer=default_tokenizer, num_samples=2, sequence_length=32, awq_grid=5, progress=False
            )
        return cache[recipe]

    return get


def probe_logits(model):
    torch.manual_seed(0)
    ids = torch.randint(3, 49152, (1, 37))
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("recipe", RECIPES)
def test_quantized_model_is_close_but_not_equal_to_float(recipe, float_model, quantized):
    model = quantized(recipe)
    expected, actual = probe_logits(float_model), probe_logits(model)
    assert not torch.equal(actual, expected)
    assert relative_error(actual, expected) < 0.6
    assert model.config.quantization_config["recipe"] == recipe
    assert float_model.quantization is None  # the float model is untouched
    generated = model.generate(torch.tensor([[1, 100, 200]]), max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert generated.shape == (1, 7)


@pytest.mark.parametrize("recipe", RECIPES)
def test_round_trip_is_bit_identical(recipe, quantized, tmp_path):
    model = quantized(recipe)
    model.save_pretrained(tmp_path / recipe)
    Encodings.read(tmp_path / recipe / "model.encodings")  # validates the 1.0.0 schema
    again = EdgeLlamaForCausalLM.from_pretrained(tmp_path / recipe)
    assert torch.equal(probe_logits(again), probe_logits(model))


@pytest.mark.parametrize("recipe", ["w4a16", "w8a16", "8da4w", "w4-awq"])
def test_push_to_hub_and_back_is_bit_identical(recipe, quantized, tmp_path, monkeypatch):
    from ..loopback_hub import LoopbackHub, point_hf_client_at

    model = quantized(recipe)
    with LoopbackHub() as hub:
        point_hf_client_at(hub.endpoint, monkeypatch, tmp_path / "hf-cache")
        model.push_to_hub(f"edge-tests/tiny-{recipe}")
        pulled = EdgeLlamaForCausalLM.from_pretrained(f"edge-tests/tiny-{recipe}", cache_dir=str(tmp_path / "download"))
    assert torch.equal(probe_logits(pulled), probe_logits(model))


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_quantized_weight_has_a_param_encoding(recipe, quantized):
    model = quantized(recipe)
    encodings = get_engine(model.quantization.recipe.engine).encodings(model)
    recipe_spec = model.quantization.recipe
    for name, module in quantizable_weights(model):
        scheme = recipe_spec.weights_for(name)
        if scheme is None:
            assert f"{name}.weight" not in encodings.params
            continue
        encoding = encodings.params[f"{name}.weight"]
        assert encoding.bw == (scheme.decompressed_bits or scheme.bits)
        encoding.check_fits(tuple(module.weight.shape))


@pytest.mark.parametrize("recipe", sorted(QNN))
def test_qnn_kv_cache_in_and_out_share_one_int8_encoding(recipe, quantized):
    model = quantized(recipe)
    encodings = get_engine("aimet").encodings(model)
    for layer in range(model.config.num_hidden_layers):
        for kind in ("key", "value"):
            cache_in = encodings.activations[f"past_{kind}_{layer}_in"]
            cache_out = encodings.activations[f"past_{kind}_{layer}_out"]
            assert cache_in == cache_out.__class__(**{**cache_out.__dict__, "name": cache_in.name})
            assert cache_in.bw == 8 and cache_in.is_sym
    mask = encodings.activations["attention_mask"]
    assert mask.bw == 16 and mask.scale[0] * 65535 == pytest.approx(50.0, rel=1e-4)  # the clip range [-50, 0]
    softmax = encodings.activations["model.layers.0.self_attn.softmax.0:output0"]
    assert softmax.scale[0] * 65535 == pytest.approx(1.0, rel=1e-6) and softmax.offset == [0]


def test_w4a16_lm_head_is_8_bit_per_channel(quantized):
    encodings = get_engine("aimet").encodings(quantized("w4a16"))
    head = encodings.params["lm_head.weight"]
    assert head.bw == 8 and head.enc_type == "PER_CHANNEL" and head.is_sym
    assert len(head.scale) == 49152
    assert encodings.params["model.layers.0.self_attn.q_proj.0.weight"].bw == 4


def test_lpbq_encodings_are_blockwise(quantized):
    encodings = get_engine("aimet").encodings(quantized("w4a16-lpbq"))
    entry = encodings.params["model.layers.0.mlp.down_proj.weight"]
    assert entry.enc_type == "LPBQ" and entry.block_size == 64 and entry.compressed_bw == 4 and entry.bw == 8
    assert len(entry.per_block_int_scale) == 128 * (256 // 64)


def test_sequential_mse_runs_through_aimet(float_model, default_tokenizer):
    model = float_model.quantize("w4a16", tokenizer=default_tokenizer, num_samples=1, sequence_length=16, use_seq_mse=True)
    assert model.config.quantization_config["use_seq_mse"] is True
    quantizer = model.model.layers[0].self_attn.q_proj[0].param_quantizers["weight"]
    assert not quantizer.is_overwrite_allowed()  # SeqMSE chose and froze this encoding


def test_awq_scales_are_folded_so_float_function_is_preserved(float_model, default_tokenizer):
    """AWQ without the final rounding must leave the model's function unchanged (scales only move)."""
    from edge_llama.quantization import awq_engine

    model = float_model.quantize("w4-awq", tokenizer=default_tokenizer, num_samples=2, sequence_length=32, awq_grid=5, progress=False)
    norm = model.model.layers[0].input_layernorm.weight
    assert not torch.equal(norm, float_model.model.layers[0].input_layernorm.weight)  # scales were folded in
    assert awq_engine.AwqEngine.needs_calibration

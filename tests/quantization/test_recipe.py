"""Recipes are data: the shipped ones load, bad ones fail naming the file and the field."""

from __future__ import annotations

import pytest
import yaml

from edge_llama.quantization.recipe import (
    Granularity,
    RecipeError,
    available_recipes,
    load_recipe,
    parse_recipe,
)


def test_shipped_recipes_load():
    assert {"w4a16", "w4a16-lpbq", "w8a16", "8da4w", "w4-awq"} <= set(available_recipes())
    for name in available_recipes():
        assert load_recipe(name).name == name


def test_w4a16_resolves_lm_head_to_8_bits():
    recipe = load_recipe("w4a16")
    assert recipe.weights_for("model.layers.3.self_attn.q_proj.0").bits == 4
    assert recipe.weights_for("lm_head").bits == 8
    assert recipe.kv_cache.bits == 8 and recipe.kv_cache.tie_in_out
    assert recipe.activations.bits == 16 and not recipe.activations.symmetric


def test_lpbq_and_awq_specifics():
    lpbq = load_recipe("w4a16-lpbq").weights
    assert lpbq.granularity is Granularity.LPBQ and lpbq.block_size == 64 and lpbq.decompressed_bits == 8
    awq = load_recipe("w4-awq")
    assert awq.weights_for("lm_head") is None  # lm_head stays float
    assert not awq.weights.symmetric and awq.weights.group_size == 128


def test_group_size_falls_back_when_it_does_not_divide():
    scheme = load_recipe("w4-awq").weights
    assert scheme.block_for(1536) == 128
    assert scheme.block_for(576) == 96  # SmolLM2's hidden size is not a multiple of 128


def test_group_fallback_error_names_the_weight(tmp_path):
    data = yaml.safe_load(open(load_recipe("8da4w").source))
    data["weights"] = {"bits": 4, "granularity": "per-group", "group_size": 128, "group_fallback": "error"}
    recipe = parse_recipe(data)
    with pytest.raises(RecipeError, match="model.layers.0.mlp.up_proj has 576 input channels"):
        recipe.weights.block_for(576, "model.layers.0.mlp.up_proj")


def test_user_recipe_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nengine: aimet\ntarget: qnn\n"
        "weights: {bits: 6, granularity: per-channel}\nactivations: {bits: 16}\n"
        "overrides:\n  - match: 'model.layers.*.mlp.down_proj'\n    weights: {bits: 8}\n"
    )
    recipe = load_recipe(path)
    assert recipe.weights_for("model.layers.7.mlp.down_proj").bits == 8
    assert recipe.weights_for("model.layers.7.mlp.up_proj").bits == 6


def test_round_trip_through_dict():
    for name in available_recipes():
        recipe = load_recipe(name)
        again = parse_recipe(recipe.to_dict(), source=recipe.source)
        assert again == recipe


def test_unknown_recipe_lists_known_ones():
    with pytest.raises(RecipeError, match="unknown recipe 'w3a7'.*w4a16"):
        load_recipe("w3a7")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"weights": {"bits": 1}}, "weights: bits must be an integer between 2 and 32"),
        ({"weights": {"bits": 4, "granularity": "per-group"}}, "per-group weights need a positive group_size"),
        ({"weights": {"bits": 4, "granularity": "diagonal"}}, "'diagonal' is not a valid Granularity"),
        ({"weights": {"bits": 4, "bitz": 3}}, r"unknown field\(s\) \['bitz'\]"),
        ({"engine": "tensorrt"}, "engine must be one of"),
        ({"layout": {"use_conv": True}}, "layout.use_conv"),
        ({"kv_cache": {"bits": 8, "symmetric": "yes"}}, "symmetric must be true or false"),
        ({"overrides": [{"weights": {"bits": 8}}]}, r"overrides\[0\].match"),
        ({"colour": "blue"}, r"unknown field\(s\) \['colour'\]"),
        ({"activations": {"bits": 16, "residual_stream": "bf16"}}, "residual_stream must be one of integer, float16, got 'bf16'"),
    ],
)
def test_invalid_fields_are_named(tmp_path, change, message):
    data = yaml.safe_load(open(load_recipe("w4a16").source))
    data.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError, match=message) as error:
        load_recipe(path)
    assert "bad.yaml" in str(error.value)


def test_qnn_recipes_keep_the_residual_stream_in_fp16():
    for name in ("w4a16", "w4a16-lpbq", "w8a16"):
        assert load_recipe(name).activations.residual_stream == "float16"
    older = load_recipe("w4a16").to_dict()
    del older["activations"]["residual_stream"]  # a checkpoint saved before the option existed
    assert parse_recipe(older).activations.residual_stream == "integer"

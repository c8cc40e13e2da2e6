"""Property-based tests of the recipe parser: every valid recipe survives the trip through
`config.json` (`to_dict` → JSON → `parse_recipe`) unchanged; any other data (YAML allows keys of any
type) gives a `RecipeError` naming the field, never another exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_llama.quantization.recipe import ENGINES, LAYOUT_SWITCHES, RecipeError, available_recipes, load_recipe, parse_recipe

from .conftest import fast

scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10)
yaml_keys = st.text(max_size=10) | st.integers(-5, 5) | st.none() | st.booleans()
yaml_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(yaml_keys, inner, max_size=4), max_leaves=10)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
bits = st.integers(2, 32)


@st.composite
def weight_schemes(draw) -> dict:
    granularity = draw(st.sampled_from(["per-tensor", "per-channel", "per-group", "per-block", "lpbq"]))
    scheme = {"bits": draw(st.integers(2, 16)), "granularity": granularity, "symmetric": draw(st.booleans())}
    if granularity == "per-group":
        scheme["group_size"] = draw(st.integers(1, 512))
    if granularity in ("per-block", "lpbq"):
        scheme["block_size"] = draw(st.integers(1, 512))
    if granularity == "lpbq":
        scheme["symmetric"] = True
        scheme["decompressed_bits"] = draw(st.integers(scheme["bits"] + 1, 32))
    if draw(st.booleans()):
        scheme["group_fallback"] = draw(st.sampled_from(["smaller-group", "error"]))
    return scheme


@st.composite
def recipes(draw) -> dict:
    recipe = {
        "name": draw(st.text(min_size=1, max_size=12)),
        "engine": draw(st.sampled_from(ENGINES)),
        "target": draw(st.text(min_size=1, max_size=8)),
        "weights": draw(weight_schemes()),
    }
    optional = {
        "description": st.text(max_size=20),
        "activations": st.fixed_dictionaries(
            {"bits": bits}, optional={"symmetric": st.booleans(), "dynamic": st.booleans(), "granularity": st.sampled_from(["per-tensor", "per-token"])}
        ),
        "kv_cache": st.fixed_dictionaries({}, optional={"bits": bits, "symmetric": st.booleans(), "tie_in_out": st.booleans()}),
        "embeddings": weight_schemes(),
        "layout": st.dictionaries(st.sampled_from(LAYOUT_SWITCHES), st.booleans()),
        "overrides": st.lists(
            st.fixed_dictionaries({"match": st.text(max_size=12)}, optional={"weights": st.none() | weight_schemes()}), max_size=3
        ),
        "options": st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        recipe[key] = draw(optional[key])
    return recipe


def _parse_or_recipe_error(data):
    try:
        return parse_recipe(data, source="fuzz.yaml")
    except RecipeError as error:
        assert "fuzz.yaml" in str(error)  # every error names the file
        return None


@pytest.mark.parametrize("name", available_recipes())
def test_shipped_recipes_survive_config_json(name):
    recipe = load_recipe(name)
    assert parse_recipe(json.loads(json.dumps(recipe.to_dict()))) == recipe


@fast(150)
@given(recipes())
def test_valid_recipes_survive_config_json(data):
    recipe = parse_recipe(data, source="fuzz.yaml")
    again = parse_recipe(json.loads(json.dumps(recipe.to_dict())), source="config.json")
    assert again == recipe
    assert again.to_dict() | {"source": None} == recipe.to_dict() | {"source": None}


@fast(200)
@given(yaml_values)
def test_random_data_gives_a_recipe_error(data):
    _parse_or_recipe_error(data)


@st.composite
def edited_recipes(draw):
    """A valid recipe with one field (at any depth) replaced by random YAML data, or a random key added."""
    recipe = draw(recipes())
    parent = recipe
    while True:
        children = [k for k, v in parent.items() if isinstance(v, dict)] if isinstance(parent, dict) else []
        if not children or draw(st.booleans()):
            break
        parent = parent[draw(st.sampled_from(children))]
    if draw(st.booleans()) or not parent:
        parent[draw(yaml_keys)] = draw(yaml_values)
    else:
        parent[draw(st.sampled_from(sorted(parent, key=str)))] = draw(yaml_values)
    return recipe


@fast(200)
@given(edited_recipes())
def test_edited_recipes_parse_or_give_a_recipe_error(data):
    recipe = _parse_or_recipe_error(data)
    if recipe is not None:  # whatever parses survives config.json too
        assert parse_recipe(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_yaml_alias_bomb_is_refused(tmp_path):
    lines = ["name: bomb", "engine: rtn", "target: cpu", "weights: {bits: 4}", "options:", "  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):  # 10**9 values once expanded
        lines.append(f"  a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecipeError, match=r"bomb.yaml: options holds more than \d+ values"):
        load_recipe(path)


def test_huge_recipe_file_is_refused(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("name: huge\nengine: rtn\ntarget: cpu\nweights: {bits: 4}\ndescription: " + "x" * (2 * 1024**2) + "\n")
    with pytest.raises(RecipeError, match=r"huge.yaml: \d+ bytes is larger than the \d+-byte limit"):
        load_recipe(path)


@pytest.mark.parametrize(
    "options, message",
    [
        ("{0: x}", r"option names must be strings, found 0"),
        ("{when: 2026-12-01}", r"options.when: date values cannot be stored in config.json"),
        ("{range: [0.0, .inf]}", r"options.range\[1\]: inf cannot be stored in config.json"),
        ("{layers: !!set {a, b}}", r"options.layers: set values cannot be stored"),
    ],
)
def test_options_that_config_json_would_change_are_refused(tmp_path, options, message):
    path = tmp_path / "r.yaml"
    path.write_text(f"name: r\nengine: rtn\ntarget: cpu\nweights: {{bits: 4}}\noptions: {options}\n")
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)

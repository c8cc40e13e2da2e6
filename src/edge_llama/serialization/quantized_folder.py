"""The quantized checkpoint folder: one form for every recipe and engine.

```
config.json              model_type "edge_llama", quantization_config {quant_method "edge_llama", engine, recipe, …}
generation_config.json
model.encodings          AIMET encodings 1.0.0 (param encodings of every quantized weight, activations where used)
model.data               the weights, once, as ONNX external data
model_ar{AR}_cl{CL}.onnx one graph per AR length, pointing into model.data
tokenizer.json, tokenizer_config.json, …
README.md                model card
```

The weights in `model.data` are what the engine keeps in float: the original weights for the QNN
recipes (AIMET applies the encodings), the dequantized grid values for the others. Each engine
rebuilds its quantized model from them plus the encodings, bit-identically. Nothing is unpickled.

`quantization_config.checksums` records the sha256 of `model.data`, `model.encodings` and the
graphs; loading checks them last (after the structural checks, which name the broken tensor), so a
file corrupted after saving never loads silently. They catch accidents, not attackers (who can
rewrite them): what keeps a crafted folder harmless is `serialization.safety` and the checks here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .._io import atomic_directory
from ..errors import EdgeLlamaError
from ..quantization.encodings import Encodings, EncodingsError
from ..quantization.engines import get_engine, quantizable_weights
from ..quantization.quantize import QuantizationState
from ..quantization.recipe import parse_recipe
from .model_data import FILE_NAME as DATA_FILE
from .model_data import ModelData, ModelDataError
from .safety import contained_file, file_sha256, verify_sha256

if TYPE_CHECKING:
    from ..configuration_edge_llama import EdgeLlamaConfig
    from ..modeling_edge_llama import EdgeLlamaForCausalLM

ENCODINGS_FILE = "model.encodings"


def save_quantized(model: EdgeLlamaForCausalLM, folder: str | os.PathLike, tokenizer=None) -> None:
    """Writes the quantized folder atomically: a staging folder renamed into place at the end."""
    from ..export.onnx_graphs import export_onnx_graphs
    from ..model_card import write_model_card

    engine = get_engine(model.quantization.recipe.engine)
    with atomic_directory(folder) as staging:
        encodings = engine.encodings(model)
        graphs = export_onnx_graphs(engine.float_model(model), staging, activation_names=encodings.activations)
        encodings.write(staging / ENCODINGS_FILE)
        model.config.quantization_config = {
            **model.quantization.to_config(),
            "checksums": {name: file_sha256(staging / name) for name in (DATA_FILE, ENCODINGS_FILE, *(p.name for p in graphs.values()))},
        }
        model.config.save_pretrained(staging)
        model.generation_config.save_pretrained(staging)
        tokenizer = tokenizer if tokenizer is not None else _checkpoint_tokenizer(model)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        write_model_card(model, staging)


def load_quantized(cls: type[EdgeLlamaForCausalLM], folder: str | os.PathLike, config: EdgeLlamaConfig) -> EdgeLlamaForCausalLM:
    """Rebuilds the quantized model saved in `folder` (see `save_quantized`)."""
    from ..export.onnx_graphs import graph_file_name, read_graph_weights

    folder = Path(folder)
    settings = config.quantization_config
    for ar in config.ar_lengths:
        contained_file(folder, graph_file_name(ar, config.context_length), "graph")
    data_path = contained_file(folder, DATA_FILE, "weights file")
    encodings_path = contained_file(folder, ENCODINGS_FILE, "encodings file")
    try:
        recipe = parse_recipe(settings["recipe_spec"], source=f"{folder / 'config.json'}: quantization_config.recipe_spec")
    except KeyError as error:
        raise EdgeLlamaError(f"{folder / 'config.json'}: quantization_config has no recipe_spec") from error
    float_config = config.__class__.from_dict({k: v for k, v in config.to_dict().items() if k != "quantization_config"})
    locations = read_graph_weights(folder, float_config)
    with torch.device("meta"):
        model = cls(float_config)
    expected = _expected_weights(model)
    missing, extra = sorted(set(expected) - set(locations)), sorted(set(locations) - set(expected))
    if missing or extra:
        raise ModelDataError(
            f"{folder}: the graphs' weights do not match config.json's model: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for name, location in locations.items():  # before reading: a crafted shape must not size an allocation
        if location.shape != expected[name]:
            raise ModelDataError(f"{folder.name}: weight {name} has shape {list(location.shape)}, the model needs {list(expected[name])}")
    with ModelData(data_path) as data:
        state = {name: data.read(location) for name, location in locations.items()}
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    encodings = Encodings.read(encodings_path)
    engine = get_engine(recipe.engine)
    expected_params = getattr(engine, "expected_params", expected_param_encodings)(model, recipe)
    encodings.check_params(expected_params, source=str(folder / ENCODINGS_FILE))
    model.quantization = QuantizationState(
        recipe,
        settings.get("calibration", {}),
        settings.get("use_seq_mse", False),
        seconds=settings.get("quantization_seconds"),
        base_model=settings.get("base_model"),
        license=settings.get("license"),
        perplexity=settings.get("perplexity"),
    )
    engine.restore(model, recipe, encodings)
    _verify_checksums(folder, config, settings)
    model.config.quantization_config = settings
    model.name_or_path = str(folder)
    return model.eval()


def _verify_checksums(folder: Path, config, settings: dict) -> None:
    from ..export.onnx_graphs import graph_file_name

    checksums = settings.get("checksums")
    if checksums is None:
        return  # saved before checksums were recorded
    config_path = folder / "config.json"
    if not isinstance(checksums, dict):
        raise ModelDataError(f"{config_path}: quantization_config.checksums must be an object of file name to sha256")
    graphs = [graph_file_name(ar, config.context_length) for ar in config.ar_lengths]
    for name in (DATA_FILE, ENCODINGS_FILE, *graphs):
        error = EncodingsError if name == ENCODINGS_FILE else ModelDataError
        verify_sha256(folder / name, checksums.get(name), config_path, error=error)


def expected_param_encodings(model, recipe) -> dict[str, tuple[int, ...]]:
    """Weight name → shape of every weight the recipe quantizes."""
    expected = {
        f"{name}.weight": tuple(module.weight.shape)
        for name, module in quantizable_weights(model)
        if recipe.weights_for(name) is not None and not _is_tied_head(model, name)
    }
    if recipe.embeddings is not None:
        expected["model.embed_tokens.weight"] = tuple(model.model.embed_tokens.weight.shape)
    return expected


def _is_tied_head(model, name: str) -> bool:
    return name == "lm_head" and model.lm_head.weight is model.model.embed_tokens.weight


def _expected_weights(model) -> dict[str, tuple[int, ...]]:
    from ..export.onnx_graphs import canonical_parameters

    canonical, _ = canonical_parameters(model)
    return {name: tuple(tensor.shape) for name, tensor in canonical.items()}


def _checkpoint_tokenizer(model):
    from ..checkpoints import load_tokenizer

    try:
        return load_tokenizer(model.name_or_path)
    except EdgeLlamaError:  # no tokenizer (or no resolvable source): the folder is saved without one
        return None

"""The README.md model card written beside a quantized checkpoint, and the base model's card metadata."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from . import __version__

# Recipe target → the export targets a checkpoint quantized for it is meant for (onnx always works).
_EXPORTS_FOR = {
    "qnn": (("qnn", '--device "Snapdragon 8 Elite"', "QNN context binaries; `edge-llama devices` lists the devices"),),
    "executorch": (("executorch", "", "an XNNPACK `.pte` for ExecuTorch's runner"),),
    "onnx-int4": (("onnx-int4", "", "ONNX with int4 MatMulNBits weights for ONNX Runtime (GenAI) / Ryzen AI"),),
}


def card_metadata(name_or_path: str | os.PathLike) -> dict:
    """The YAML front matter of a checkpoint's README.md: a local folder's, or a hub repo's from the
    local HF cache (no download). Empty when there is none or it does not parse."""
    path = Path(str(name_or_path)).expanduser()
    readme = path / "README.md"
    if not path.exists():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(str(name_or_path), "README.md")
        except ValueError:  # not a valid repo id
            return {}
        readme = Path(cached) if isinstance(cached, str) else None
    if readme is None or not readme.is_file():
        return {}
    text = readme.read_text(errors="replace")
    if not text.startswith("---"):
        return {}
    front, closed, _ = text[3:].partition("\n---")
    try:
        metadata = yaml.safe_load(front) if closed else None
    except yaml.YAMLError:
        return {}
    return metadata if isinstance(metadata, dict) else {}


def write_model_card(model, folder: Path) -> None:
    """Writes `folder/README.md`: Hub metadata, what the recipe did, how to load and export."""
    state = model.quantization
    recipe = state.recipe
    config = model.config
    base_model = state.base_model
    metadata = {
        "library_name": "edge-llama",
        "pipeline_tag": "text-generation",
        "tags": ["edge-llama", "quantized", recipe.name, recipe.target, "llama"],
    }
    if base_model:
        metadata["base_model"] = base_model
        metadata["base_model_relation"] = "quantized"
    if state.license:
        metadata["license"] = state.license
    calibration = state.calibration or {}
    rows = [
        ("recipe", f"`{recipe.name}` — {recipe.description}" if recipe.description else f"`{recipe.name}`"),
        ("engine", recipe.engine),
        ("target", recipe.target),
        ("weights", _weights(recipe)),
        ("activations", _activations(recipe)),
        ("context length (CL)", config.context_length),
        ("AR lengths", ", ".join(map(str, config.ar_lengths))),
        ("calibration", f"{calibration.get('tokens', 0)} tokens of {calibration.get('source', '—')}" if calibration else "none"),
        ("Sequential MSE", "yes" if state.use_seq_mse else "no"),
    ]
    perplexity = state.perplexity
    if perplexity:
        change = 100 * (perplexity["quantized"] / perplexity["float"] - 1)
        rows.append((
            "perplexity (float → quantized)",
            f"{perplexity['float']:.3f} → {perplexity['quantized']:.3f} ({change:+.1f} %) on {perplexity['tokens']} tokens of "
            f"{perplexity['text']}, windows of {perplexity['context_length']}",
        ))
    else:
        rows.append(("perplexity (float → quantized)", "not measured (`edge-llama quantize --measure-ppl N` records it)"))
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    from .export import TARGETS

    exports = [("onnx", "", "per-part ONNX + encodings, Qualcomm AI Hub's upload form"), *_EXPORTS_FOR.get(recipe.target, ())]
    exports = [entry for entry in exports if entry[0] in TARGETS]
    export_lines = "\n".join(
        f"edge-llama export --checkpoint <this folder or repo id> --target {target}{' ' + extra if extra else ''} -o exported-{target}"
        f"   # {what}"
        for target, extra, what in exports
    )
    base = (
        f"A quantized edge version of [{base_model}](https://huggingface.co/{base_model})"
        if base_model and "/" in base_model else "A quantized edge model"
    )
    text = f"""---
{yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).strip()}
---

# {Path(str(base_model or model.name_or_path)).name} — {recipe.name} (edge-llama)

{base}, made with edge-llama {__version__}.
The graphs are shaped for NPUs (split-head attention, 1×1 convolutions, RoPE and a static KV cache as inputs).

| | |
|---|---|
{table}

## Files

- `model_ar*_cl*.onnx` — one graph per AR length, all pointing into `model.data`
- `model.data` — the weights, once (ONNX external data)
- `model.encodings` — AIMET encodings 1.0.0 of the quantized tensors
- `config.json` (`quantization_config` holds the whole recipe), `generation_config.json`, tokenizer files

## Load

```python
import edge_llama  # registers the edge_llama model type with transformers' Auto classes
from edge_llama import EdgeLlamaForCausalLM

model = EdgeLlamaForCausalLM.from_pretrained("<this folder or repo id>")   # the quantized simulation, on the host
```

```bash
pip install edge-llama
edge-llama demo --checkpoint <this folder or repo id> --prompt "What is gravity?"
edge-llama evaluate --checkpoint <this folder or repo id> --task wikitext-ppl
```

## Export

```bash
{export_lines}
```

or `optimum-cli export edge-llama --model <this folder or repo id> --target <target> <output folder>`.
"""
    (folder / "README.md").write_text(text)


def _weights(recipe) -> str:
    scheme = recipe.weights
    block = f", groups of {scheme.block}" if scheme.block else ""
    return f"int{scheme.bits} {scheme.granularity.value}{block}, {'symmetric' if scheme.symmetric else 'asymmetric'}"


def _activations(recipe) -> str:
    scheme = recipe.activations
    if scheme is None:
        return "float"
    kind = "dynamic " + scheme.granularity if scheme.dynamic else "static"
    return f"{scheme.bits}-bit {kind}, {'symmetric' if scheme.symmetric else 'asymmetric'}"

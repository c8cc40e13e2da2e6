"""The README.md model card written beside a quantized checkpoint."""

from __future__ import annotations

from pathlib import Path

import yaml

from . import __version__


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
    if state.license:
        metadata["license"] = state.license
    calibration = state.calibration or {}
    rows = [
        ("recipe", f"`{recipe.name}` — {recipe.description}"),
        ("engine", recipe.engine),
        ("target", recipe.target),
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
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    text = f"""---
{yaml.safe_dump(metadata, sort_keys=False).strip()}
---

# {Path(str(base_model or model.name_or_path)).name} — {recipe.name} (edge-llama)

{"A quantized edge version of [" + base_model + "](https://huggingface.co/" + base_model + ")" if base_model and "/" in base_model else "A quantized edge model"}, made with edge-llama {__version__}.
The graphs are shaped for NPUs (split-head attention, 1×1 convolutions, RoPE and a static KV cache as inputs).

| | |
|---|---|
{table}

## Files

- `model_ar*_cl*.onnx` — one graph per AR length, all pointing into `model.data`
- `model.data` — the weights, once (ONNX external data)
- `model.encodings` — AIMET encodings 1.0.0 of the quantized tensors
- `config.json`, `generation_config.json`, tokenizer files

## Use

```python
import edge_llama
from edge_llama import EdgeLlamaForCausalLM

model = EdgeLlamaForCausalLM.from_pretrained("<this folder or repo id>")   # the quantized simulation
```

```bash
edge-llama demo --checkpoint <this folder or repo id> --prompt "What is gravity?"
edge-llama evaluate --checkpoint <this folder or repo id> --task wikitext-ppl
edge-llama export --checkpoint <this folder or repo id> --target onnx -o exported   # AI Hub's upload form
```
"""
    (folder / "README.md").write_text(text)

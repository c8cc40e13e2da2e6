"""`edge-llama info`: what a checkpoint or export folder holds, without loading the weights."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "info",
        help="Show what a checkpoint holds: base model, recipe, CL/AR, parts, file sizes.",
        description="Reads a checkpoint's config (and, for folders, lists its files); loads no weights.",
    )
    parser.add_argument("--checkpoint", default="DEFAULT", help="An alias, a checkpoint or export folder, a hub id or a .gguf file.")
    return parser


def run(args: argparse.Namespace) -> int:
    from edge_llama import EdgeLlamaConfig
    from edge_llama.checkpoints import load_config

    from edge_llama.presets import find_preset

    source, config = load_config(args.checkpoint)
    preset = find_preset(args.checkpoint)
    defaults = preset.defaults if preset is not None else {}
    edge = config if isinstance(config, EdgeLlamaConfig) else EdgeLlamaConfig.from_llama_config(config, **defaults)
    quantization = getattr(config, "quantization_config", None) or {}
    export = getattr(config, "edge_llama_export", None) or {}
    recipe = quantization or export.get("recipe") or {}
    lines = [
        ("checkpoint", f"{args.checkpoint} ({source})" if str(source) != str(args.checkpoint) else str(source)),
        ("kind", "export for " + export["target"] if export else ("quantized" if quantization else "float")),
        ("base model", recipe.get("base_model") or (preset.base_model if preset else None) or "unknown"),
        ("architecture", f"{edge.num_hidden_layers} layers, hidden {edge.hidden_size}, {edge.num_attention_heads}/"
                         f"{edge.num_key_value_heads} heads, vocab {edge.vocab_size}"),
        ("context length", f"{edge.context_length} (AR {', '.join(map(str, edge.ar_lengths))})"),
        ("parts", str(edge.num_parts or f"{edge.default_num_parts()} (default)")),
    ]
    if recipe:
        calibration = recipe.get("calibration") or {}
        lines += [
            ("recipe", f"{recipe.get('recipe')} ({recipe.get('engine')}; weights {recipe.get('weight_bits')} bit, "
                       f"activations {recipe.get('activation_bits') or 'float'})"),
            ("calibration", f"{calibration.get('source', '-')}, {calibration.get('tokens', 0)} tokens"
                            + (", Sequential MSE" if recipe.get("use_seq_mse") else "")),
            ("quantized in", f"{recipe['quantization_seconds']:.0f} s" if recipe.get("quantization_seconds") else "-"),
        ]
    folder = Path(source)
    if folder.is_dir():
        files = sorted(path for path in folder.iterdir() if path.is_file())
        total = sum(path.stat().st_size for path in files)
        lines.append(("files", f"{len(files)}, {total / 1e6:.1f} MB"))
        lines += [(f"  {path.name}", f"{path.stat().st_size / 1e6:.1f} MB") for path in files]
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    return 0

"""`edge-llama quantize`: a checkpoint and a recipe in, a quantized checkpoint folder out."""

from __future__ import annotations

import argparse
import logging

from edge_llama.errors import EdgeLlamaError

logger = logging.getLogger(__name__)


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "quantize",
        help="Quantize a checkpoint with a recipe and save the quantized folder.",
        description=(
            "Quantizes a checkpoint with a recipe (QNN recipes on aimet-torch, 8da4w on torchao, AWQ, RTN), "
            "calibrating on held-apart text, and writes the quantized checkpoint folder: model.encodings, "
            "model.data, the AR graphs, config, tokenizer and a model card."
        ),
    )
    parser.add_argument("--checkpoint", default="DEFAULT", help="An alias, a checkpoint folder, a hub id or a .gguf file.")
    add_quantization_options(parser, recipe_default="w4a16")
    add_layerwise_options(parser)
    parser.add_argument("--context-length", type=int, default=None, help="CL of the static graphs (default: the checkpoint's, else 4096).")
    parser.add_argument(
        "--measure-ppl", type=int, default=0, metavar="WINDOWS",
        help="Measure float and quantized perplexity on this many held-apart windows and record them (model card).",
    )
    parser.add_argument("-o", "--output-dir", required=True, help="Where to write the quantized checkpoint folder.")
    return parser


def add_quantization_options(parser: argparse.ArgumentParser, recipe_default: str | None) -> None:
    """The options that say how to quantize (shared by `quantize` and `export --recipe`)."""
    from edge_llama.quantization.recipe import available_recipes

    parser.add_argument(
        "--recipe", default=recipe_default,
        help=f"A recipe ({', '.join(available_recipes())}) or a recipe .yaml path"
        + ("." if recipe_default else "; quantizes a float checkpoint first (default: export it as it is)."),
    )
    parser.add_argument("--calibration-data", default=None, help="Text source: a local file/folder/saved dataset or 'wikitext-2' (default: the offline corpus).")
    parser.add_argument("--num-samples", type=int, default=None, help="Calibration sequences (default: the recipe's).")
    parser.add_argument("--sequence-length", type=int, default=None, help="Tokens per calibration sequence (default: min(CL, 512)).")
    parser.add_argument("--use-seq-mse", action="store_true", help="Choose weight encodings by Sequential MSE (QNN recipes; slow on CPU).")


def add_layerwise_options(parser: argparse.ArgumentParser) -> None:
    """`--layerwise`, `--device`, `--calibration-batch-size`, `--progress-dir` (the `quantize` command's)."""
    layerwise = parser.add_argument_group("layer-wise calibration (QNN recipes; for big models on one GPU)")
    layerwise.add_argument("--layerwise", action="store_true",
                           help="Calibrate one decoder layer at a time on --device; the rest of the model stays on the host.")
    layerwise.add_argument("--device", dest="layer_device", default=None, help="Where layers execute with --layerwise, e.g. cuda or cuda:1 (default: where the model is).")
    layerwise.add_argument("--calibration-batch-size", type=int, default=None,
                           help="Sequences that go through a layer together with --layerwise (memory for speed; default 8).")
    layerwise.add_argument("--progress-dir", default=None,
                           help="Folder for per-layer progress with --layerwise; rerunning the same command continues after the last finished layer.")


def quantize_with_options(model, args: argparse.Namespace, recipe):
    """`model.quantize` with the options of `add_quantization_options`."""
    logger.info("Quantizing %s with %s …", args.checkpoint, recipe.name)
    return model.quantize(
        recipe,
        calibration=args.calibration_data,
        num_samples=args.num_samples,
        sequence_length=args.sequence_length,
        use_seq_mse=args.use_seq_mse,
        **_layerwise_options(args),
    )


def _layerwise_options(args: argparse.Namespace) -> dict:
    """`layerwise`, `device`, `calibration_batch_size`, `progress_dir` for `model.quantize`, or nothing."""
    if not hasattr(args, "layerwise"):  # `export --recipe` quantizes all in memory
        return {}
    chosen = {"device": args.layer_device, "calibration_batch_size": args.calibration_batch_size,
              "progress_dir": args.progress_dir}
    chosen = {name: value for name, value in chosen.items() if value is not None}
    if not args.layerwise:
        if chosen:
            flags = ", ".join("--" + name.replace("_", "-") for name in chosen)
            raise EdgeLlamaError(f"{flags} only apply to layer-wise calibration: add --layerwise (or drop them).")
        return {}
    return {"layerwise": True, **chosen}


def run(args: argparse.Namespace) -> int:
    from edge_llama import EdgeLlamaForCausalLM
    from edge_llama.quantization.recipe import load_recipe

    recipe = load_recipe(args.recipe)  # a bad recipe should fail before the slow part
    model = EdgeLlamaForCausalLM.from_pretrained(args.checkpoint, context_length=args.context_length)
    quantized = quantize_with_options(model, args, recipe)
    state = quantized.quantization
    if args.measure_ppl:
        state.perplexity = _measure_perplexity(model, quantized, args.measure_ppl, not args.quiet)
    quantized.save_pretrained(args.output_dir)
    summary = f"{args.checkpoint} → {args.output_dir}: {state.recipe.name} in {state.seconds:.1f} s"
    if state.perplexity:
        ppl = state.perplexity
        summary += f"; perplexity {ppl['float']:.3f} → {ppl['quantized']:.3f} ({100 * (ppl['quantized'] / ppl['float'] - 1):+.1f} %)"
    print(summary)
    return 0


def _measure_perplexity(model, quantized, windows: int, progress: bool) -> dict:
    from edge_llama.evaluation import evaluate

    window = min(model.config.context_length, 1024)
    results = [
        evaluate(candidate, "wikitext-ppl", num_samples=windows, context_length=window, progress=progress)
        for candidate in (model, quantized)
    ]
    return {
        "float": results[0].metrics["perplexity"],
        "quantized": results[1].metrics["perplexity"],
        "text": results[0].data,
        "tokens": results[0].metrics["tokens"],
        "context_length": window,
    }

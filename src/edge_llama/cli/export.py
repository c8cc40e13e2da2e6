"""`edge-llama export`: a checkpoint in, a deployable folder for one target out."""

from __future__ import annotations

import argparse
import inspect
import logging

from .quantize import add_quantization_options, quantize_with_options

logger = logging.getLogger(__name__)

# Command-line options handed to the target's export function, if its signature takes them.
TARGET_OPTIONS = ("device", "parts", "max_seq_len", "accuracy_level", "skip_inferencing", "skip_profiling", "int4_as_int8")


def add_parser(commands) -> argparse.ArgumentParser:
    from edge_llama.export import TARGETS

    parser = commands.add_parser(
        "export",
        help="Export a float or quantized checkpoint for a device target.",
        description=(
            "Splits the model into parts and writes them for a deployment target (docs/export.md). With --recipe, "
            "a float checkpoint is quantized first. onnx: every part for the prompt processor and the token "
            "generator as ONNX graphs sharing one model.data, with per-part AIMET encodings for quantized "
            "checkpoints (Qualcomm AI Hub's upload form). qnn: QNN context binaries for one device, compiled on "
            "this machine with onnxruntime-qnn; `edge-llama evaluate` and `demo` run them on the x86 HTP simulator."
        ),
    )
    parser.add_argument("--checkpoint", default="DEFAULT", help="An alias, a checkpoint folder (quantized or not), a hub id or a .gguf file.")
    parser.add_argument("--target", default="onnx", choices=sorted(TARGETS), help="The deployment target.")
    parser.add_argument("--device", default=None, help="Targets that compile for a device (qnn): its name (see `edge-llama devices`; default Snapdragon 8 Gen 3).")
    parser.add_argument("--parts", type=int, default=None, help="Number of parts (default: the checkpoint's num_parts, else a size rule).")
    parser.add_argument("--context-length", type=int, default=None, help="CL of the graphs (float checkpoints; default: the checkpoint's).")
    parser.add_argument("--max-seq-len", type=int, default=None, help="Targets with a cache inside the program (executorch, onnx-int4): the longest prompt chunk per call (default: the target's).")
    parser.add_argument("--accuracy-level", type=int, choices=range(5), default=None, metavar="{0..4}",
                        help="onnx-int4: MatMulNBits' accuracy level (0: float32 compute, as the host simulation, the "
                             "default; 4: int8 activations inside the kernel, faster and approximate).")
    parser.add_argument("--skip-inferencing", action="store_true", help="Targets that run the export after compiling (qnn: the one-token HTP simulator check): do not.")
    parser.add_argument("--int4-as-int8", action="store_true",
                        help="qnn, qai-hub: store 4-bit weights as int8 codes x 16 (the same values). HTP computes convolutions with "
                             "16-bit activations in units of 256 input x weight steps, which costs int4 weights much of "
                             "their agreement with the host simulation and some quality (whole SmolLM2 w4a16: top-1 76%% -> 94%%, "
                             "perplexity 10%% above the host's -> within 0.1%%); "
                             "widened, the weights take twice the bytes.")
    parser.add_argument("--skip-profiling", action="store_true", help="Targets that profile the export on a device (qai-hub): do not.")
    add_quantization_options(parser, recipe_default=None)
    parser.add_argument("-o", "--output-dir", required=True, help="Where to write the exported folder.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing, non-empty --output-dir (once the new export is complete).")
    return parser


def run(args: argparse.Namespace) -> int:
    from edge_llama import EdgeLlamaForCausalLM
    from edge_llama.checkpoints import is_quantized_config, load_config
    from edge_llama.errors import EdgeLlamaConfigError
    from edge_llama.export import check_output_dir, export_function
    from edge_llama.exported import export_target
    from edge_llama.quantization.recipe import load_recipe

    recipe = load_recipe(args.recipe) if args.recipe else None  # bad input fails before the slow part
    export = export_function(args.target)
    check_output_dir(args.output_dir, args.overwrite)  # before the slow part
    if hasattr(export, "preflight"):
        export.preflight()  # what the target needs from outside (qai-hub: an API token), before any work
    options = _target_options(args, export)
    _, config = load_config(args.checkpoint)
    if export_target(config) is not None:
        raise EdgeLlamaConfigError(
            f"{args.checkpoint} is already an export (for {export_target(config)}); export the checkpoint it came from"
        )
    quantized = is_quantized_config(config)
    if quantized and recipe is not None and recipe.name != config.quantization_config.get("recipe"):
        raise EdgeLlamaConfigError(
            f"{args.checkpoint} is already quantized with {config.quantization_config.get('recipe')}; "
            f"--recipe {args.recipe} needs the float checkpoint it came from"
        )
    model = EdgeLlamaForCausalLM.from_pretrained(args.checkpoint, context_length=None if quantized else args.context_length)
    if quantized and args.context_length not in (None, model.config.context_length):
        raise EdgeLlamaConfigError(
            f"{args.checkpoint} is quantized at CL {model.config.context_length}; --context-length cannot change it"
        )
    if recipe is not None and not quantized:
        model = quantize_with_options(model, args, recipe)
    logger.info("Exporting %s for %s …", args.checkpoint, args.target)
    folder = model.export(args.target, args.output_dir, overwrite=args.overwrite, **options)
    files = sorted(path.name for path in folder.iterdir())
    print(f"{args.checkpoint} → {folder} ({args.target}): {len(files)} files")
    return 0


def _target_options(args: argparse.Namespace, export) -> dict:
    """The options set on the command line that `export` takes; a setting it cannot take is an error."""
    from edge_llama.errors import EdgeLlamaConfigError

    accepted = inspect.signature(export).parameters
    options = {}
    for name in TARGET_OPTIONS:
        value = getattr(args, name)
        if value in (None, False):
            continue
        flag = "--" + name.replace("_", "-")
        if name in accepted:
            options[name] = value
        elif name.startswith("skip_"):  # AI Hub habits: nothing to skip where the target runs no such job
            logger.info("The %s target runs no job %s would skip; ignored.", args.target, flag)
        else:
            raise EdgeLlamaConfigError(f"{flag} does not apply to the {args.target} target; leave it out")
    return options

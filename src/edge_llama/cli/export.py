"""`edge-llama export`: a checkpoint in, a deployable folder for one target out."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_parser(commands) -> argparse.ArgumentParser:
    from edge_llama.export import TARGETS

    parser = commands.add_parser(
        "export",
        help="Export a float or quantized checkpoint for a device target.",
        description=(
            "Splits the model into parts and writes them for a deployment target. onnx: every part for the "
            "prompt processor and the token generator as ONNX graphs sharing one model.data, with per-part "
            "AIMET encodings for quantized checkpoints (Qualcomm AI Hub's upload form). qnn: QNN context binaries "
            "for one device, compiled on this machine with onnxruntime-qnn; `edge-llama evaluate` and `demo` run "
            "them on the x86 HTP simulator."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", default="DEFAULT", help="An alias, a checkpoint folder (quantized or not), a hub id or a .gguf file.")
    parser.add_argument("--target", default="onnx", choices=sorted(TARGETS), help="The deployment target.")
    parser.add_argument("--device", default=None, help="qnn: the target device (see `edge-llama devices`; default Snapdragon 8 Gen 3).")
    parser.add_argument("--parts", type=int, default=None, help="Number of parts (default: the checkpoint's num_parts, else a size rule).")
    parser.add_argument("--context-length", type=int, default=None, help="CL of the graphs (float checkpoints; default: the checkpoint's).")
    parser.add_argument("-o", "--output-dir", required=True, help="Where to write the exported folder.")
    return parser


def run(args: argparse.Namespace) -> int:
    from edge_llama import EdgeLlamaForCausalLM
    from edge_llama.checkpoints import is_quantized_config, load_config

    _, config = load_config(args.checkpoint)
    quantized = is_quantized_config(config)
    model = EdgeLlamaForCausalLM.from_pretrained(args.checkpoint, context_length=None if quantized else args.context_length)
    if quantized and args.context_length not in (None, model.config.context_length):
        from edge_llama.errors import EdgeLlamaConfigError

        raise EdgeLlamaConfigError(
            f"{args.checkpoint} is quantized at CL {model.config.context_length}; --context-length cannot change it"
        )
    logger.info("Exporting %s for %s …", args.checkpoint, args.target)
    options = {"parts": args.parts}
    if args.device is not None:
        if args.target != "qnn":
            from edge_llama.errors import EdgeLlamaConfigError

            raise EdgeLlamaConfigError(f"--device applies to the qnn target, not {args.target}")
        options["device"] = args.device
    folder = model.export(args.target, args.output_dir, **options)
    files = sorted(path.name for path in folder.iterdir())
    print(f"{args.checkpoint} → {folder} ({args.target}): {len(files)} files")
    return 0

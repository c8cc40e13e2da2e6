"""`optimum-cli export edge-llama`: the `edge-llama export` flow behind optimum's command line.

optimum 2.x loads every `optimum/commands/register/*.py` it finds (a PEP 420 namespace: no
`__init__.py` in `optimum/`, `optimum/commands/` or `register/`) and registers the commands in its
`REGISTER_COMMANDS`. It does so on every `optimum-cli` start, so this module imports nothing heavy:
torch, transformers and edge_llama load only when the command runs (or lists its targets).

    optimum-cli export edge-llama --model DEFAULT --recipe w4a16 --target qnn smollm2-w4a16-qnn
"""

from __future__ import annotations

import sys
from argparse import ArgumentParser

from optimum.commands.base import BaseOptimumCLICommand, CommandInfo
from optimum.commands.export.base import ExportCommand


class _ExportTargets:
    """`edge_llama.export.TARGETS`' names, read when argparse first needs them (a check or --help)."""

    def _names(self) -> list[str]:
        from edge_llama.export import TARGETS

        return sorted(TARGETS)

    def __contains__(self, name) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


class EdgeLlamaExportCommand(BaseOptimumCLICommand):
    COMMAND = CommandInfo(
        name="edge-llama",
        help="Export a Llama checkpoint for phone and laptop NPUs/CPUs with edge-llama (quantizing it first with --recipe).",
    )

    @staticmethod
    def parse_args(parser: ArgumentParser) -> None:
        parser.description = (
            "Runs `edge-llama export`: loads --model, quantizes it with --recipe if it is a float checkpoint, and "
            "writes the export for --target into OUTPUT_DIR (docs/export.md). Exit codes: 0 done, 1 unexpected "
            "failure (rerun with --verbose), 2 bad usage or input."
        )
        parser.add_argument("--model", required=True, help="An alias (DEFAULT = SmolLM2-135M-Instruct), a checkpoint folder (quantized or not), a hub id or a .gguf file.")
        parser.add_argument("--recipe", default=None, help="A quantization recipe name (w4a16 for qnn, 8da4w for executorch, …; `edge-llama quantize --help` lists them) or a recipe .yaml path; default: export the checkpoint as it is.")
        parser.add_argument("--target", default="onnx", choices=_ExportTargets(), help="The deployment target (default: onnx).")
        parser.add_argument("--device", default=None, help="Targets that compile for a device (qnn): its name, see `edge-llama devices`.")
        parser.add_argument("--parts", type=int, default=None, help="Number of parts (default: the checkpoint's, else a size rule).")
        parser.add_argument("--context-length", type=int, default=None, help="CL of the graphs for a float checkpoint (default: the checkpoint's).")
        parser.add_argument("--max-seq-len", type=int, default=None, help="executorch, onnx-int4: the longest prompt chunk per call (default: the target's).")
        parser.add_argument("--accuracy-level", type=int, choices=range(5), default=None, metavar="{0..4}", help="onnx-int4: MatMulNBits' accuracy level (0: float32 compute, as the host simulation; 4: int8 activations inside the kernel, faster and approximate).")
        parser.add_argument("--calibration-data", default=None, help="With --recipe: a local text file/folder/saved dataset or 'wikitext-2' (default: the offline corpus).")
        parser.add_argument("--num-samples", type=int, default=None, help="With --recipe: calibration sequences (default: the recipe's).")
        parser.add_argument("--sequence-length", type=int, default=None, help="With --recipe: tokens per calibration sequence (default: min(CL, 512)).")
        parser.add_argument("--use-seq-mse", action="store_true", help="With --recipe: choose weight encodings by Sequential MSE (QNN recipes; slow on CPU).")
        parser.add_argument("--int4-as-int8", action="store_true", help="qnn, qai-hub: store 4-bit weights as int8 codes x 16 (the same values; HTP's 16-bit-activation convs lose much less agreement with the host, twice the weight bytes; docs/export.md).")
        parser.add_argument("--skip-inferencing", action="store_true", help="Targets that run the export after compiling (qnn: the HTP simulator check): do not.")
        parser.add_argument("--skip-profiling", action="store_true", help="Targets that profile the export on a device (qai-hub): do not.")
        parser.add_argument("--overwrite", action="store_true", help="Replace an existing, non-empty OUTPUT_DIR (once the new export is complete).")
        verbosity = parser.add_mutually_exclusive_group()
        verbosity.add_argument("-v", "--verbose", action="store_true", help="Log details; show tracebacks on errors.")
        verbosity.add_argument("-q", "--quiet", action="store_true", help="Print only the result.")
        parser.add_argument("output", metavar="OUTPUT_DIR", help="Where to write the exported folder.")

    def run(self) -> None:
        from edge_llama.cli.main import main

        code = main(["export", *edge_llama_arguments(self.parser, self.args)])
        if code:
            sys.exit(code)  # optimum-cli ignores run()'s result; scripts need the exit code


# optimum-cli option → `edge-llama export` option where the names differ.
_RENAMED = {"model": "--checkpoint", "output": "--output-dir"}


def edge_llama_arguments(parser: ArgumentParser, args) -> list[str]:
    """The `edge-llama export` arguments that say what `args` (parsed by `parser`) says."""
    argv = []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.dest == "help" or value is None or value is False:
            continue
        flag = _RENAMED.get(action.dest) or action.option_strings[-1]
        argv += [flag] if value is True else [flag, str(value)]
    return argv


REGISTER_COMMANDS = [(EdgeLlamaExportCommand, ExportCommand)]

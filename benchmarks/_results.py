"""What every benchmark writes beside its numbers: the command, the machine and the versions."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
import transformers

import edge_llama


def command_line(args: argparse.Namespace) -> str:
    options = " ".join(
        f"--{key.replace('_', '-')} {' '.join(map(str, value)) if isinstance(value, list) else value}"
        for key, value in vars(args).items()
        if key != "output" and value is not None
    )
    return f"{Path(sys.argv[0]).as_posix()} {options}"


def write_results(args: argparse.Namespace, payload: dict) -> None:
    """Writes `payload` plus provenance as JSON to `args.output` and says where."""
    result = {
        "command": command_line(args),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "versions": {"edge_llama": edge_llama.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
        **payload,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")

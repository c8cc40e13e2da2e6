"""Seconds to export a model's ONNX graphs (what `save_pretrained` of a quantized model pays), with the
decoder layers repeated from a two-layer trace (the default, `edge_llama.export.layer_repeat`) and
with every layer traced, side by side in one process; and how far each graph is from the torch model.

    .venv/bin/python benchmarks/graph_export.py [--checkpoint DEFAULT] [--context-length 256]

Prints a table and writes benchmarks/results/graph_export.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from _results import write_results

from edge_llama import EdgeLlamaForCausalLM, resolve_checkpoint
from edge_llama.export import layer_repeat
from edge_llama.export.onnx_graphs import export_onnx_graphs

RESULTS = Path(__file__).parent / "results"


def max_relative_error(model: EdgeLlamaForCausalLM, path: Path, ar_length: int) -> float:
    input_ids, mask, cos, sin, keys, values = model.graph(ar_length).example_inputs()
    input_ids = torch.arange(100, 100 + input_ids.numel()).view_as(input_ids)
    with torch.no_grad():
        expected = model.graph_forward(input_ids, mask, cos, sin, keys, values)[0].numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = [input_ids, mask, cos, sin, *keys, *values]
    logits = session.run(["logits"], {i.name: t.numpy() for i, t in zip(session.get_inputs(), feeds)})[0]
    return float(np.abs(logits - expected).max() / np.abs(expected).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="DEFAULT")
    parser.add_argument("--context-length", type=int, default=256)
    parser.add_argument("--output", type=Path, default=RESULTS / "graph_export.json")
    args = parser.parse_args()

    model = EdgeLlamaForCausalLM.from_pretrained(resolve_checkpoint(args.checkpoint), context_length=args.context_length)
    rows = []
    for mode, min_layers in (("two layers traced, the rest repeated", layer_repeat.MIN_LAYERS), ("every layer traced", 10**6)):
        layer_repeat.MIN_LAYERS = min_layers
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            paths = export_onnx_graphs(model, folder)
            seconds = time.perf_counter() - started
            errors = {ar: max_relative_error(model, path, ar) for ar, path in paths.items()}
        rows.append({"mode": mode, "seconds": round(seconds, 1), "max_relative_error": errors})
        print(f"{mode:<40} {seconds:7.1f} s   logits vs torch {max(errors.values()):.1e}", flush=True)
    write_results(args, {"checkpoint": args.checkpoint, "context_length": args.context_length,
                         "num_layers": model.config.num_hidden_layers, "rows": rows})


if __name__ == "__main__":
    main()

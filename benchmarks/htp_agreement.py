"""The compiled QNN context binaries on the x86 HTP simulator against the host simulation, side by side
for the residual-stream settings of the QNN recipes.

    .venv/bin/python benchmarks/htp_agreement.py --layers 12        # about 10 min on 2 cores

Cuts SmolLM2-135M to its first `--layers` decoder layers (compiling all 30 takes about 9 min per
setting), quantizes it with `--recipe` at one calibration sample of 128 tokens for each
`--residual-streams` setting, exports `qnn` for `--device` (AR 128 only, `--parts` parts, no
weight-shared binaries), and runs one AR-128 call of held-apart prose through the binaries and
through the host simulation: top-1 agreement and logits SQNR, beside the host's own noise floor
(the host against itself with fp32-rounding-sized noise on every projection's input,
`edge_llama.evaluation.agreement`). Writes benchmarks/results/htp_agreement.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch
from _results import write_results
from _smollm2 import first_layers, held_apart_ids

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.evaluation.agreement import agreement, noise_floor
from edge_llama.quantization import load_recipe

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=12, help="decoder layers kept (SmolLM2 has 30)")
    parser.add_argument("--recipe", default="w4a16")
    parser.add_argument("--residual-streams", nargs="+", default=["float16", "integer"], choices=["float16", "integer"])
    parser.add_argument("--device", default="Snapdragon 8 Gen 3")
    parser.add_argument("--parts", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "htp_agreement.json")
    args = parser.parse_args()

    model = first_layers(args.layers)
    ids = held_apart_ids(128)

    rows = []
    for residual_stream in args.residual_streams:
        recipe = load_recipe(args.recipe)
        recipe = dataclasses.replace(recipe, activations=dataclasses.replace(recipe.activations, residual_stream=residual_stream))
        quantized = model.quantize(recipe, num_samples=1, sequence_length=128, progress=False)
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            quantized.export("qnn", Path(scratch) / "bundle", device=args.device, parts=args.parts,
                             weight_sharing=False, skip_inferencing=True)
            export_seconds = time.perf_counter() - started
            on_simulator = EdgeLlamaForCausalLM.from_pretrained(Path(scratch) / "bundle")
            with torch.no_grad():
                expected, actual = quantized(ids).logits, on_simulator(ids).logits
        on_htp, floor = agreement(expected, actual), noise_floor(quantized, ids, expected=expected)
        rows.append({
            "residual_stream": residual_stream,
            "top1_agreement": on_htp["top1_agreement"],
            "logits_sqnr_db": on_htp["logits_sqnr_db"],
            "host_noise_floor": floor,
            "export_seconds": round(export_seconds, 1),
        })
    print(f"SmolLM2-135M, first {args.layers} layers, {args.recipe}, {args.device}, {ids.shape[1]} positions")
    print(f"{'residual stream':<16} {'top-1':>7} {'SQNR dB':>8} {'floor top-1':>12} {'floor dB':>9} {'export s':>9}")
    for row in rows:
        floor = row["host_noise_floor"]
        print(f"{row['residual_stream']:<16} {row['top1_agreement']:7.3f} {row['logits_sqnr_db']:8.1f} "
              f"{floor['top1_agreement']:12.3f} {floor['logits_sqnr_db']:9.1f} {row['export_seconds']:9.1f}")
    write_results(args, {"model": f"SmolLM2-135M-Instruct, first {args.layers} layers", "positions": ids.shape[1], "rows": rows})


if __name__ == "__main__":
    main()

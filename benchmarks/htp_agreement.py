"""The compiled QNN context binaries on the x86 HTP simulator against the host simulation, side by side
for the settings that decide how closely HTP follows it.

    .venv/bin/python benchmarks/htp_agreement.py --layers 12        # about 3 min per setting on 2 cores

Cuts SmolLM2-135M to its first `--layers` decoder layers (compiling all 30 takes about 9 min per
setting), quantizes it with `--recipe` at one calibration sample of 128 tokens for each combination
of `--residual-streams` (fp16 or integer), `--kv-bits` (the KV cache's grid) and `--weights` (4-bit
weights compiled as int4, or as int8 codes × 16: `export(..., int4_as_int8=True)`), exports `qnn`
for `--device` (AR 128 only, `--parts` parts, no weight-shared binaries), and runs one AR-128 call
of held-apart prose through the binaries and through the host simulation: top-1 agreement and
logits SQNR, beside the host's own noise floor (the host against itself with fp32-rounding-sized
noise on every projection's input, `edge_llama.evaluation.agreement`). Writes
benchmarks/results/htp_agreement.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
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
    parser.add_argument("--residual-streams", nargs="+", default=["float16"], choices=["float16", "integer"])
    parser.add_argument("--kv-bits", nargs="+", type=int, default=[8], choices=[8, 16], help="the KV cache's grid (the recipe's: 8)")
    parser.add_argument("--weights", nargs="+", default=["int4", "int8"], choices=["int4", "int8"],
                        help="how 4-bit weights are compiled: int4, or int8 codes x 16 (int4_as_int8)")
    parser.add_argument("--device", default="Snapdragon 8 Gen 3")
    parser.add_argument("--parts", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "htp_agreement.json")
    args = parser.parse_args()

    model = first_layers(args.layers)
    ids = held_apart_ids(128)

    rows = []
    quantized_by_setting = {}
    for residual_stream, kv_bits, weights in itertools.product(args.residual_streams, args.kv_bits, args.weights):
        if (residual_stream, kv_bits) not in quantized_by_setting:
            recipe = load_recipe(args.recipe)
            recipe = dataclasses.replace(
                recipe,
                activations=dataclasses.replace(recipe.activations, residual_stream=residual_stream),
                kv_cache=dataclasses.replace(recipe.kv_cache, bits=kv_bits),
            )
            quantized_by_setting[(residual_stream, kv_bits)] = model.quantize(recipe, num_samples=1, sequence_length=128, progress=False)
        quantized = quantized_by_setting[(residual_stream, kv_bits)]
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            quantized.export("qnn", Path(scratch) / "bundle", device=args.device, parts=args.parts,
                             weight_sharing=False, skip_inferencing=True, int4_as_int8=weights == "int8")
            export_seconds = time.perf_counter() - started
            on_simulator = EdgeLlamaForCausalLM.from_pretrained(Path(scratch) / "bundle")
            with torch.no_grad():
                expected, actual = quantized(ids).logits, on_simulator(ids).logits
        on_htp, floor = agreement(expected, actual), noise_floor(quantized, ids, expected=expected)
        rows.append({
            "residual_stream": residual_stream,
            "kv_bits": kv_bits,
            "weights_on_device": weights,
            "top1_agreement": on_htp["top1_agreement"],
            "logits_sqnr_db": on_htp["logits_sqnr_db"],
            "host_noise_floor": floor,
            "export_seconds": round(export_seconds, 1),
        })
        print(rows[-1], flush=True)
    print(f"SmolLM2-135M, first {args.layers} layers, {args.recipe}, {args.device}, {ids.shape[1]} positions")
    print(f"{'residual stream':<16} {'KV bits':>7} {'weights':>8} {'top-1':>7} {'SQNR dB':>8} {'floor top-1':>12} {'floor dB':>9} {'export s':>9}")
    for row in rows:
        floor = row["host_noise_floor"]
        print(f"{row['residual_stream']:<16} {row['kv_bits']:7d} {row['weights_on_device']:>8} {row['top1_agreement']:7.3f} {row['logits_sqnr_db']:8.1f} "
              f"{floor['top1_agreement']:12.3f} {floor['logits_sqnr_db']:9.1f} {row['export_seconds']:9.1f}")
    write_results(args, {"model": f"SmolLM2-135M-Instruct, first {args.layers} layers", "positions": ids.shape[1], "rows": rows})


if __name__ == "__main__":
    main()

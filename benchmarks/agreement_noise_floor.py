"""The noise floor of top-1 agreement: how well each recipe's host simulation agrees with itself when
only float rounding changes.

    .venv/bin/python benchmarks/agreement_noise_floor.py        # float 8da4w w4a16 w8a16, 256 positions, ~15 min on 2 cores

For each recipe, quantizes the default model (CL 1024; the aimet recipes with one calibration
sample of 128 tokens, as the export benchmarks do), runs `--positions` tokens of held-apart prose,
then runs them again with every projection's input multiplied by `1 + eps·N(0, 1)` for each
`--eps` (1e-7 is fp32 rounding). Prints top-1 agreement, logits SQNR and max relative error of the
perturbed run against the clean one; an exported artifact (`.pte`, QDQ graph on ORT, QNN binaries on
the HTP simulator) cannot be expected to agree with the host better than this unless it reproduces
the host's arithmetic bit for bit. Writes benchmarks/results/agreement_noise_floor.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _results import write_results
from _smollm2 import held_apart_ids

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.evaluation.agreement import noise_floor

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=["float", "8da4w", "w4a16", "w8a16"], help="'float' or recipe names")
    parser.add_argument("--positions", type=int, default=256, help="tokens of held-apart prose, one call")
    parser.add_argument("--eps", type=float, nargs="+", default=[1e-7, 1e-6, 1e-5], help="relative noise sizes")
    parser.add_argument("--context-length", type=int, default=1024)
    parser.add_argument("--output", type=Path, default=RESULTS / "agreement_noise_floor.json")
    args = parser.parse_args()

    ids = held_apart_ids(args.positions)
    float_model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT", context_length=args.context_length)
    rows = []
    print(f"{'recipe':<8} {'eps':>7} {'top-1':>7} {'SQNR dB':>8} {'max rel err':>12}")
    for recipe in args.recipes:
        started = time.perf_counter()
        model = float_model if recipe == "float" else float_model.quantize(recipe, num_samples=1, sequence_length=128, progress=False)
        with torch.no_grad():
            clean = model(ids).logits
        for eps in args.eps:
            row = {"recipe": recipe, **noise_floor(model, ids, eps, expected=clean)}
            rows.append(row)
            print(f"{recipe:<8} {eps:7.0e} {row['top1_agreement']:7.3f} {row['logits_sqnr_db']:8.1f} {row['max_relative_error']:12.2e}",
                  flush=True)
        rows[-1]["seconds"] = round(time.perf_counter() - started, 1)
    write_results(args, {"model": "SmolLM2-135M-Instruct", "positions": ids.shape[1], "rows": rows})


if __name__ == "__main__":
    main()

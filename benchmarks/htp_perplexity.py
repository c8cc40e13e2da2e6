"""Does HTP's int4 conv arithmetic cost quality, or only agreement? SmolLM2-135M's QNN bundle on the x86
HTP simulator, with 4-bit weights compiled as int4 and as int8 codes × 16 (`int4_as_int8`), side by side
with the host simulation and the float model on the same held-apart windows.

    .venv/bin/python benchmarks/htp_perplexity.py --windows 3     # about 35 min on 2 cores

Quantizes the whole model (30 layers, CL `--context-length`, AR 128 only) once with `--recipe`, exports
`qnn` for `--device` once per weight form (no weight-shared binaries, no export-time check), and runs
`--windows` windows of CL tokens of the evaluation text through every model: perplexity, and each
bundle's top-1 agreement and logits SQNR against the host simulation over all predicted positions.
Writes benchmarks/results/htp_perplexity.json.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from _results import write_results
from _smollm2 import held_apart_ids

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.evaluation.agreement import agreement

RESULTS = Path(__file__).parent / "results"


def window_logits(model, windows: torch.Tensor) -> torch.Tensor:
    """Logits (windows, CL, vocab) of each window, run as its own sequence from an empty cache."""
    with torch.no_grad():
        return torch.cat([model(window.unsqueeze(0)).logits.float() for window in windows])


def perplexity_of(logits: torch.Tensor, windows: torch.Tensor) -> float:
    predicted = logits[:, :-1].reshape(-1, logits.shape[-1])
    return math.exp(torch.nn.functional.cross_entropy(predicted, windows[:, 1:].reshape(-1)).item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="w4a16")
    parser.add_argument("--windows", type=int, default=3, help="evaluation windows of CL tokens")
    parser.add_argument("--context-length", type=int, default=256)
    parser.add_argument("--calibration-samples", type=int, default=1, help="calibration sequences of 128 tokens")
    parser.add_argument("--weights", nargs="+", default=["int4", "int8"], choices=["int4", "int8"],
                        help="how 4-bit weights are compiled: int4, or int8 codes x 16 (int4_as_int8)")
    parser.add_argument("--device", default="Snapdragon 8 Gen 3")
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS / "htp_perplexity.json")
    args = parser.parse_args()

    cl = args.context_length
    windows = held_apart_ids(cl * args.windows).reshape(args.windows, cl)
    model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT", context_length=cl, ar_lengths=[128])
    float_ppl = perplexity_of(window_logits(model, windows), windows)
    started = time.perf_counter()
    quantized = model.quantize(args.recipe, num_samples=args.calibration_samples, sequence_length=128, progress=False)
    print(f"quantized ({args.recipe}) in {time.perf_counter() - started:.0f} s", flush=True)
    host = window_logits(quantized, windows)
    rows = [
        {"model": "float", "ppl": float_ppl},
        {"model": f"{args.recipe} host simulation", "ppl": perplexity_of(host, windows)},
    ]
    for weights in args.weights:
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            quantized.export("qnn", Path(scratch) / "bundle", device=args.device, parts=args.parts,
                             weight_sharing=False, skip_inferencing=True, int4_as_int8=weights == "int8")
            export_seconds = time.perf_counter() - started
            started = time.perf_counter()
            on_htp = window_logits(EdgeLlamaForCausalLM.from_pretrained(Path(scratch) / "bundle"), windows)
            run_seconds = time.perf_counter() - started
        measured = agreement(host[:, :-1].reshape(-1, host.shape[-1]), on_htp[:, :-1].reshape(-1, host.shape[-1]))
        rows.append({
            "model": f"HTP simulator, weights as {weights}",
            "ppl": perplexity_of(on_htp, windows),
            "top1_agreement": measured["top1_agreement"],
            "logits_sqnr_db": measured["logits_sqnr_db"],
            "export_seconds": round(export_seconds, 1),
            "simulator_seconds": round(run_seconds, 1),
        })
        print(rows[-1], flush=True)
    positions = args.windows * (cl - 1)
    print(f"SmolLM2-135M-Instruct, {args.recipe}, {args.device}, {args.windows} windows of {cl} ({positions} predicted positions)")
    print(f"{'model':<32} {'PPL':>8} {'ΔPPL':>8} {'top-1 vs host':>14} {'SQNR dB':>8}")
    for row in rows:
        row["delta_ppl_percent"] = 100 * (row["ppl"] / float_ppl - 1)
        top1 = f"{row['top1_agreement']:14.3f}" if "top1_agreement" in row else f"{'':14}"
        sqnr = f"{row['logits_sqnr_db']:8.1f}" if "logits_sqnr_db" in row else f"{'':8}"
        print(f"{row['model']:<32} {row['ppl']:8.3f} {row['delta_ppl_percent']:+7.1f}% {top1} {sqnr}")
    write_results(args, {"model": "SmolLM2-135M-Instruct", "positions": positions, "rows": rows})


if __name__ == "__main__":
    main()

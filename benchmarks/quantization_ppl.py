"""Perplexity of the float edge model and of each recipe's simulation, on held-apart text, in one run.

    .venv/bin/python benchmarks/quantization_ppl.py [--recipes w4-rtn 8da4w w4-awq w8a16 w4a16] [--windows 8]

Evaluation text: the evaluation part of the offline corpus (never used for calibration), windows of
CL tokens. LlamaForCausalLM on the same windows checks that the edge model's float path is the
reference. Prints a table and writes benchmarks/results/quantization_ppl.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _results import write_results
from transformers import LlamaForCausalLM

from edge_llama import EdgeLlamaForCausalLM, load_tokenizer, resolve_checkpoint
from edge_llama.evaluation import perplexity

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="DEFAULT")
    parser.add_argument("--recipes", nargs="+", default=["w4-rtn", "8da4w", "w4-awq", "w8a16", "w4a16"])
    parser.add_argument("--context-length", type=int, default=512)
    parser.add_argument("--windows", type=int, default=8, help="evaluation windows of CL tokens")
    parser.add_argument("--calibration-samples", type=int, default=4)
    parser.add_argument("--output", type=Path, default=RESULTS / "quantization_ppl.json")
    args = parser.parse_args()

    tokenizer = load_tokenizer(args.checkpoint)
    model = EdgeLlamaForCausalLM.from_pretrained(args.checkpoint, context_length=args.context_length)

    def measure(candidate) -> float:
        return perplexity(candidate, tokenizer, window_length=args.context_length, max_windows=args.windows, progress=False).perplexity

    reference = LlamaForCausalLM.from_pretrained(resolve_checkpoint(args.checkpoint)).eval()
    rows = [{"variant": "LlamaForCausalLM float", "ppl": measure(reference), "seconds": 0.0}]
    del reference
    base = measure(model)
    rows.append({"variant": "edge float", "ppl": base, "seconds": 0.0})
    for row in rows:
        print(f"{row['variant']:<26} ppl {row['ppl']:8.3f}", flush=True)
    for recipe in args.recipes:
        started = time.perf_counter()
        quantized = model.quantize(recipe, num_samples=args.calibration_samples, progress=False)
        seconds = time.perf_counter() - started
        value = measure(quantized)
        rows.append({"variant": recipe, "ppl": value, "delta_percent": 100 * (value / base - 1), "seconds": seconds})
        print(f"{recipe:<26} ppl {value:8.3f}  Δ {100 * (value / base - 1):+7.1f} %  quantized in {seconds:6.0f} s", flush=True)
        del quantized
    write_results(args, {"evaluation_tokens": args.windows * (args.context_length - 1), "rows": rows})


if __name__ == "__main__":
    main()

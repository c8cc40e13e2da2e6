"""Quality of every recipe on the embedded default model, side by side in one run.

    .venv/bin/python benchmarks/quality.py                       # everything (about 1.5 h on 2 cores)
    .venv/bin/python benchmarks/quality.py --variants float w4-rtn 8da4w --windows 4 --task-samples 20

For each variant: weight bits, packed weight size (what a device stores: quantized grids plus
scales, other weights at 16 bit), perplexity on held-apart text (the evaluation part of the offline
corpus, never used for calibration, non-overlapping windows of CL tokens), ΔPPL vs the float edge
model, accuracy on one multiple-choice task, quantization wall time, and the published degradation
the variant should be compared with (ANCHORS.md). `LlamaForCausalLM` on the same windows checks that
the edge model's float path is the reference. Writes benchmarks/results/quality.json and a PNG of
size vs ΔPPL.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from _results import write_results
from transformers import LlamaForCausalLM

from edge_llama import EdgeLlamaForCausalLM, load_tokenizer, resolve_checkpoint
from edge_llama.evaluation import evaluate
from edge_llama.quantization import load_recipe
from edge_llama.quantization.footprint import weight_bytes

RESULTS = Path(__file__).parent / "results"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    recipe: str | None = None  # None: the float model
    group_size: int | None = None
    use_seq_mse: bool = False
    anchor: str = ""
    residual_stream: str | None = None  # None: the recipe's own


VARIANTS = {
    variant.name: variant
    for variant in (
        Variant("float"),
        Variant("w4-rtn", "w4-rtn", anchor="naive RTN int4 per-channel on this model: ≈ +100 % (ANCHORS)"),
        Variant("w4a16", "w4a16", anchor="AI Hub w4a16, Llama 3.2 3B: +20.7 %"),
        Variant("w4a16+seqmse", "w4a16", use_seq_mse=True, anchor="AI Hub w4a16 + SeqMSE, Llama 3.2 3B: +17.6 %"),
        Variant("w4a16-lpbq", "w4a16-lpbq", anchor="AI Hub w4a16 + SeqMSE, Llama 3.2 3B: +17.6 %"),
        Variant("w8a16", "w8a16", anchor="goal: within 1 % of float"),
        # The QNN recipes before their residual stream moved to fp16, for a side-by-side comparison.
        Variant("w4a16-int16-residual", "w4a16", residual_stream="integer", anchor="w4a16 before the fp16 residual stream"),
        Variant("w8a16-int16-residual", "w8a16", residual_stream="integer", anchor="w8a16 before the fp16 residual stream"),
        Variant("8da4w-g32", "8da4w", group_size=32, anchor="torchao 8da4w g32 on this model: ≈ +30 % (ANCHORS)"),
        Variant("8da4w-g128", "8da4w", group_size=128, anchor="ExecuTorch 8da4w g128, Llama 2 7B: +11 %"),
        Variant("w4-awq", "w4-awq", anchor="torchao int4 g128, Llama 3.2 3B: +12 %; llama.cpp Q4_K_M here: ≈ +6.3 %"),
    )
}
# llama.cpp on this model (ANCHORS.md: other held-apart prose, same kind of harness): size MB, ΔPPL %.
LLAMA_CPP_ANCHORS = {"llama.cpp Q4_0": (91.7, 17.5), "llama.cpp Q4_K_M": (105.5, 6.3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="DEFAULT")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--context-length", type=int, default=1024)
    parser.add_argument("--windows", type=int, default=8, help="evaluation windows of CL tokens")
    parser.add_argument("--task", default="piqa", help="the multiple-choice task")
    parser.add_argument("--task-samples", type=int, default=60)
    parser.add_argument("--calibration-samples", type=int, default=None, help="default: each recipe's own")
    parser.add_argument("--seq-mse-samples", type=int, default=4, help="calibration sequences of 256 tokens for SeqMSE")
    parser.add_argument("--output", type=Path, default=RESULTS / "quality.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "quality.png")
    args = parser.parse_args()

    tokenizer = load_tokenizer(args.checkpoint)
    model = EdgeLlamaForCausalLM.from_pretrained(args.checkpoint, context_length=args.context_length)

    def measure(candidate) -> tuple[float, float]:
        ppl = evaluate(candidate, "wikitext-ppl", tokenizer=tokenizer, num_samples=args.windows,
                       context_length=args.context_length, progress=False)
        choice = evaluate(candidate, args.task, tokenizer=tokenizer, num_samples=args.task_samples,
                          context_length=args.context_length, progress=False)
        return ppl.metrics["perplexity"], choice.metrics["acc_norm"]

    reference = LlamaForCausalLM.from_pretrained(resolve_checkpoint(args.checkpoint)).eval()
    reference_ppl = evaluate(reference, "wikitext-ppl", tokenizer=tokenizer, num_samples=args.windows,
                             context_length=args.context_length, progress=False).metrics["perplexity"]
    del reference
    print(f"LlamaForCausalLM float ppl {reference_ppl:.4f}", flush=True)
    rows, base_ppl = [], None
    for name in ["float", *[v for v in args.variants if v != "float"]]:
        variant = VARIANTS[name]
        started = time.perf_counter()
        candidate, bits = model, 16
        if variant.recipe is not None:
            recipe = load_recipe(variant.recipe)
            if variant.group_size is not None:
                recipe = dataclasses.replace(
                    recipe, name=variant.name, weights=dataclasses.replace(recipe.weights, group_size=variant.group_size)
                )
            if variant.residual_stream is not None:
                activations = dataclasses.replace(recipe.activations, residual_stream=variant.residual_stream)
                recipe = dataclasses.replace(recipe, name=variant.name, activations=activations)
            samples = args.seq_mse_samples if variant.use_seq_mse else args.calibration_samples
            candidate = model.quantize(
                recipe, num_samples=samples, sequence_length=256 if variant.use_seq_mse else None,
                use_seq_mse=variant.use_seq_mse, progress=False,
            )
            bits = recipe.weights.bits
        seconds = time.perf_counter() - started
        ppl, accuracy = measure(candidate)
        base_ppl = ppl if base_ppl is None else base_ppl
        row = {
            "variant": name, "weight_bits": bits, "weight_mb": weight_bytes(candidate) / 1e6, "ppl": ppl,
            "delta_ppl_percent": 100 * (ppl / base_ppl - 1), f"{args.task}_acc_norm": accuracy,
            "quantize_seconds": seconds, "anchor": variant.anchor,
        }
        rows.append(row)
        print(_format_row(row, args.task), flush=True)
        if candidate is not model:
            del candidate
    payload = {
        "model": args.checkpoint,
        "evaluation": {"text": "boolq-passages (evaluation part)", "windows": args.windows, "context_length": args.context_length,
                       "tokens": args.windows * (args.context_length - 1), "task": args.task, "task_samples": args.task_samples},
        "llama_for_causal_lm_float_ppl": reference_ppl,
        "rows": rows,
    }
    write_results(args, payload)
    _plot(rows, args.plot)


def _format_row(row: dict, task: str) -> str:
    return (
        f"{row['variant']:<14} {row['weight_bits']:>2} bit {row['weight_mb']:7.1f} MB  ppl {row['ppl']:8.3f} "
        f"Δ {row['delta_ppl_percent']:+7.1f} %  {task} {row[f'{task}_acc_norm']:.3f}  "
        f"{row['quantize_seconds']:6.0f} s   {row['anchor']}"
    )


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        axes.scatter(row["weight_mb"], row["delta_ppl_percent"], color="tab:blue")
        axes.annotate(row["variant"], (row["weight_mb"], row["delta_ppl_percent"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for label, (size, delta) in LLAMA_CPP_ANCHORS.items():
        axes.scatter(size, delta, color="tab:gray", marker="x")
        axes.annotate(label, (size, delta), textcoords="offset points", xytext=(4, -10), fontsize=8, color="tab:gray")
    axes.set_xlabel("packed weight size (MB)")
    axes.set_ylabel("Δ perplexity vs float (%)")
    axes.set_yscale("symlog", linthresh=10)
    axes.set_title("SmolLM2-135M-Instruct: recipes (blue) and llama.cpp anchors (gray, ANCHORS.md)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

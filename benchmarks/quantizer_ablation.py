"""Which quantizers of an AIMET recipe cost the perplexity: switch groups of them off, one at a time.

    .venv/bin/python benchmarks/quantizer_ablation.py --recipe w8a16        # about 15 min on 2 cores

Quantizes the embedded default model once, then measures perplexity on held-apart windows with
every quantizer on, and with each group below replaced by the identity (its encoding kept for the
others). A group whose removal brings the ΔPPL down most is where the recipe loses. Groups overlap
(`activations` holds the KV ones). Writes benchmarks/results/ablation_<recipe>.json.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from _results import write_results

from edge_llama import EdgeLlamaForCausalLM, load_tokenizer
from edge_llama.evaluation import evaluate
from edge_llama.quantization.aimet_engine import _named_quantizers

RESULTS = Path(__file__).parent / "results"

GROUPS: dict[str, Callable[[str, str], bool]] = {
    "kv cache": lambda name, kind: name.startswith("past_"),
    "attention mask": lambda name, kind: name == "attention_mask",
    "rope cos/sin": lambda name, kind: name.startswith("position_"),
    "logits": lambda name, kind: name == "logits",
    "softmax outputs": lambda name, kind: ".softmax." in name,
    "residual adds": lambda name, kind: "_residual:" in name,
    "norm + embedding weights": lambda name, kind: kind == "param" and ("norm" in name or "embed" in name),
    "projection weights": lambda name, kind: kind == "param" and not ("norm" in name or "embed" in name),
    "activations": lambda name, kind: kind == "activation",
}


def _identity(tensor, *args, **kwargs):
    return tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="DEFAULT")
    parser.add_argument("--recipe", default="w8a16", help="an AIMET (QNN) recipe")
    parser.add_argument("--context-length", type=int, default=1024)
    parser.add_argument("--windows", type=int, default=3, help="evaluation windows of CL tokens")
    parser.add_argument("--calibration-samples", type=int, default=4)
    parser.add_argument("--output", type=Path, default=None, help="default: results/ablation_<recipe>.json")
    args = parser.parse_args()
    args.output = args.output or RESULTS / f"ablation_{args.recipe}.json"

    tokenizer = load_tokenizer(args.checkpoint)
    model = EdgeLlamaForCausalLM.from_pretrained(args.checkpoint, context_length=args.context_length)

    def perplexity(candidate) -> float:
        return evaluate(candidate, "wikitext-ppl", tokenizer=tokenizer, num_samples=args.windows,
                        context_length=args.context_length, progress=False).metrics["perplexity"]

    float_ppl = perplexity(model)
    quantized = model.quantize(args.recipe, num_samples=args.calibration_samples, progress=False)
    named = list(_named_quantizers(quantized))
    rows = [{"without": "(nothing: all quantizers on)", "quantizers": 0, "ppl": perplexity(quantized)}]
    for group, belongs in GROUPS.items():
        chosen = {id(quantizer): quantizer for name, kind, quantizer in named if belongs(name, kind)}
        for quantizer in chosen.values():
            quantizer.forward = _identity  # instance attribute: nn.Module.__call__ finds it first
        try:
            rows.append({"without": group, "quantizers": len(chosen), "ppl": perplexity(quantized)})
        finally:
            for quantizer in chosen.values():
                del quantizer.forward
    print(f"{args.recipe} on {args.checkpoint}: float ppl {float_ppl:.4f} ({args.windows} windows of {args.context_length})")
    print(f"{'without':28s} {'quantizers':>10s} {'ppl':>9s} {'ΔPPL %':>8s}")
    for row in rows:
        row["delta_ppl_percent"] = 100 * (row["ppl"] / float_ppl - 1)
        print(f"{row['without']:28s} {row['quantizers']:10d} {row['ppl']:9.4f} {row['delta_ppl_percent']:+8.2f}")
    write_results(args, {"model": args.checkpoint, "recipe": args.recipe, "float_ppl": float_ppl,
                         "windows": args.windows, "context_length": args.context_length, "rows": rows})


if __name__ == "__main__":
    main()

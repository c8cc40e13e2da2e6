"""Perplexity of a float model and its quantized simulation, measured by the same code side by side.

    python examples/compare_perplexity.py                 # DEFAULT, w4a16, 4 windows of 512 tokens of the offline corpus
    python examples/compare_perplexity.py DEFAULT w8a16
"""

import sys

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.evaluation import evaluate


def main(checkpoint: str = "DEFAULT", recipe: str = "w4a16", windows: int = 4, context_length: int = 512) -> dict[str, float]:
    model = EdgeLlamaForCausalLM.from_pretrained(checkpoint, context_length=context_length)
    quantized = model.quantize(recipe, num_samples=4)
    perplexity = {
        name: evaluate(candidate, "wikitext-ppl", num_samples=windows, progress=False).metrics["perplexity"]
        for name, candidate in (("float", model), (recipe, quantized))
    }
    change = 100 * (perplexity[recipe] / perplexity["float"] - 1)
    print(f"perplexity: float {perplexity['float']:.3f}, {recipe} {perplexity[recipe]:.3f} ({change:+.1f} %)")
    return perplexity


if __name__ == "__main__":
    main(*sys.argv[1:3])

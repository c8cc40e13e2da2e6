"""Quantize a checkpoint, save the quantized folder, load it again and check it is the same model.

    python examples/quantize_and_reload.py                      # DEFAULT (SmolLM2-135M-Instruct), w4a16
    python examples/quantize_and_reload.py DEFAULT 8da4w out/   # checkpoint, recipe, output folder
"""

import sys

import torch

from edge_llama import EdgeLlamaForCausalLM, load_tokenizer


def main(checkpoint: str = "DEFAULT", recipe: str = "w4a16", output_dir: str = "smollm2-quantized",
         context_length: int = 1024) -> EdgeLlamaForCausalLM:
    model = EdgeLlamaForCausalLM.from_pretrained(checkpoint, context_length=context_length)
    quantized = model.quantize(recipe, num_samples=4)  # a few calibration sequences: a quick first look
    quantized.save_pretrained(output_dir)  # model.encodings, model.data, the AR graphs, config, tokenizer, card

    again = EdgeLlamaForCausalLM.from_pretrained(output_dir)
    prompt = load_tokenizer(output_dir)("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        same = torch.equal(quantized(prompt).logits, again(prompt).logits)
    print(f"{checkpoint} → {output_dir} ({recipe}): reloaded logits {'identical' if same else 'DIFFERENT'}")
    return again


if __name__ == "__main__":
    main(*sys.argv[1:4])

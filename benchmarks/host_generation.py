"""Host (PyTorch, float32) speed of the edge model with each rewrite on and off, beside LlamaForCausalLM;
and the default host backend (the filled part of the KV window) against the static window of CL slots.

    .venv/bin/python benchmarks/host_generation.py [--checkpoint DEFAULT] [--context-length 1024] [--repeats 3]

Prints a table and writes benchmarks/results/host_generation.json. Prompt: 256 tokens (prompt
processor); decode: 64 new tokens (token generator). Medians over --repeats runs, in one process.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _results import write_results
from transformers import LlamaForCausalLM

from edge_llama import EdgeLlamaForCausalLM, EdgeRunner, TorchGraphBackend, load_tokenizer, resolve_checkpoint

RESULTS = Path(__file__).parent / "results"
TEXT = "The lighthouse keeper wrote down the weather every morning, and how many boats went out. "


def time_generation(model, input_ids: torch.Tensor, new_tokens: int) -> tuple[float, float]:
    """Seconds for the prompt alone, and decode tokens/s after it."""
    options = dict(do_sample=False, eos_token_id=None, pad_token_id=0, attention_mask=torch.ones_like(input_ids))
    started = time.perf_counter()
    model.generate(input_ids, max_new_tokens=1, min_new_tokens=1, **options)
    prompt_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model.generate(input_ids, max_new_tokens=new_tokens + 1, min_new_tokens=new_tokens + 1, **options)
    total = time.perf_counter() - started
    return prompt_seconds, new_tokens / max(total - prompt_seconds, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="DEFAULT")
    parser.add_argument("--context-length", type=int, default=1024)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "host_generation.json")
    args = parser.parse_args()

    path = resolve_checkpoint(args.checkpoint)
    tokenizer = load_tokenizer(args.checkpoint)
    input_ids = tokenizer(TEXT * (args.prompt_tokens // 10 + 1), return_tensors="pt").input_ids[:, : args.prompt_tokens]

    variants = {"transformers LlamaForCausalLM (eager)": lambda: LlamaForCausalLM.from_pretrained(path, attn_implementation="eager")}
    for split_heads in (True, False):
        for conv in (True, False):
            name = f"edge: {'split heads' if split_heads else 'fused heads'}, {'1x1 conv' if conv else 'linear'}"
            variants[name] = lambda s=split_heads, c=conv: EdgeLlamaForCausalLM.from_pretrained(
                path, context_length=args.context_length, use_split_head_attention=s, use_conv_projections=c
            )

    def static_window():  # every call over all CL slots, the empty ones masked: the device's shapes
        model = EdgeLlamaForCausalLM.from_pretrained(path, context_length=args.context_length)
        model._runner = EdgeRunner(TorchGraphBackend(model, full_window=True))
        return model

    variants["edge: split heads, 1x1 conv, static window (full_window=True)"] = static_window

    rows = []
    for name, load in variants.items():
        model = load().eval()
        time_generation(model, input_ids[:, :16], 4)  # warm-up
        runs = [time_generation(model, input_ids, args.new_tokens) for _ in range(args.repeats)]
        prompt = statistics.median(r[0] for r in runs)
        decode = statistics.median(r[1] for r in runs)
        rows.append({"variant": name, "prompt_tokens_per_s": args.prompt_tokens / prompt, "decode_tokens_per_s": decode})
        print(f"{name:<62} prompt {rows[-1]['prompt_tokens_per_s']:8.1f} tok/s   decode {decode:6.1f} tok/s", flush=True)
        del model

    write_results(
        args,
        {
            "checkpoint": args.checkpoint,
            "context_length": args.context_length,
            "prompt_tokens": args.prompt_tokens,
            "new_tokens": args.new_tokens,
            "repeats": args.repeats,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()

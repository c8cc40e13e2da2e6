"""How closely the 8da4w `.pte` follows its host simulation on the default model (SmolLM2-135M).

    .venv/bin/python benchmarks/pte_agreement.py                    # CL 1024, 512 positions, 4 PPL windows

Exports the torchao 8da4w model to ExecuTorch, then compares the program with the host on held-apart
prose: top-1 agreement and max relative logits error over `--positions`, the first token where a
32-token greedy answer differs, and perplexity of both over `--windows` windows of CL. Beside it, in
the same run, the host's noise floor: the host against itself with fp32-rounding-sized noise on every
projection's input (`edge_llama.evaluation.agreement`), the best a runtime that does not copy the host's float
arithmetic bit for bit can reach.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_results  # noqa: E402

from edge_llama import EdgeLlamaForCausalLM, load_tokenizer  # noqa: E402
from edge_llama.data import load_corpus  # noqa: E402
from edge_llama.evaluation.agreement import agreement, noise_floor, rounding_noise  # noqa: E402
from edge_llama.evaluation.perplexity import perplexity  # noqa: E402
from edge_llama.generation.chat import encode_prompt  # noqa: E402


def greedy(model, tokenizer, new_tokens: int = 32) -> torch.Tensor:
    ids = encode_prompt(tokenizer, "What is the capital of France?")
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=False)
    return out[0, ids.shape[1] :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="DEFAULT")
    parser.add_argument("--context-length", type=int, default=1024)
    parser.add_argument("--positions", type=int, default=512)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "pte_agreement_8da4w.json")
    args = parser.parse_args()

    tokenizer = load_tokenizer(args.checkpoint)
    host = EdgeLlamaForCausalLM.from_pretrained(args.checkpoint, context_length=args.context_length).quantize("8da4w")
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        host.export("executorch", Path(folder) / "pte")
        export_seconds = time.perf_counter() - started
        program = EdgeLlamaForCausalLM.from_pretrained(Path(folder) / "pte")
        text = load_corpus(None, "evaluation").joined("\n\n")
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids[:, : args.positions]
        with torch.no_grad():
            expected, got = host(ids).logits, program(ids).logits
        floor = noise_floor(host, ids, expected=expected)
        host_answer, program_answer = greedy(host, tokenizer), greedy(program, tokenizer)
        with rounding_noise(host):
            noisy_answer = greedy(host, tokenizer)
        differs, noisy_differs = (host_answer != program_answer).nonzero(), (host_answer != noisy_answer).nonzero()
        ppl = {name: perplexity(model, tokenizer, window_length=args.context_length, max_windows=args.windows,
                                progress=False).perplexity for name, model in (("host", host), ("pte", program))}
    row = {
        **agreement(expected, got),
        "host_noise_floor": floor,
        "greedy_first_difference": int(differs[0]) if len(differs) else None,
        "host_noise_floor_greedy_first_difference": int(noisy_differs[0]) if len(noisy_differs) else None,
        "pte_answer": tokenizer.decode(program_answer, skip_special_tokens=True),
        "ppl_host": ppl["host"],
        "ppl_pte": ppl["pte"],
        "export_seconds": export_seconds,
    }
    for key, value in row.items():
        print(f"{key:24} {value}")
    write_results(args, {"positions": ids.shape[1], "windows": args.windows, **row})


if __name__ == "__main__":
    main()

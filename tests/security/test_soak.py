"""Soak: a long conversation (many times the context length) on the host runner and on an exported
artifact (the `onnx-int4` export of a float tiny model, run by onnxruntime), without memory growth
(RSS after the warm-up turns vs after the last turn) or drift from the reference model.

The host test with 10 turns (5 × CL) is in the fast suite; 120 turns and the export are `slow`.

Drift is measured against `LlamaForCausalLM` under each runner's own window rule: the host keeps a
sliding KV window (`tests/reference.py` restates the rule), the program runner re-encodes the kept
tokens when its cache is full; in both, every logit of every turn must match the reference.
"""

from __future__ import annotations

import ctypes
import gc
import os

import pytest
import torch

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.generation import plan_chunks

from ..conftest import edge_from, relative_error, tiny_llama
from ..reference import reference_logits, visibility

CL, AR, PROMPT, ANSWER = 64, 16, 12, 20
RSS_TOLERANCE = 24 * 1024**2


def _release_freed_heap() -> None:
    """Hand glibc's cached free pages back, so RSS counts memory held rather than the allocator's cache.

    Without it the 120-turn host soak grew 19–31 MiB in RSS; with it 6 MiB, all of it this test's own
    per-step logits (one small tensor pair per generated token)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS then includes the allocator's cache
        pass


def rss() -> int:
    gc.collect()
    _release_freed_heap()
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _prompts(turns: int, vocab: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    return [torch.randint(3, vocab, (PROMPT,), generator=generator) for _ in range(turns)]


def host_soak(turns: int) -> dict:
    reference = tiny_llama()
    edge = edge_from(reference, context_length=CL, ar_lengths=[AR, 1])
    options = dict(max_new_tokens=ANSWER, do_sample=False, eos_token_id=None, pad_token_id=0, return_dict_in_generate=True, output_logits=True)
    sequence, window, calls, logits, generated = torch.empty(1, 0, dtype=torch.long), None, [], [], []
    memory = []
    for turn, prompt in enumerate(_prompts(turns, 160)):
        sequence = torch.cat([sequence, prompt.view(1, -1)], dim=1)
        new = sequence.shape[1] - (window.get_seq_length() if window is not None else 0)
        out = edge.generate(sequence, past_key_values=window, **options)
        window = out.past_key_values
        calls += plan_chunks(new, [AR, 1]) + [(1, 1)] * (ANSWER - 1)
        generated += list(range(sequence.shape[1], out.sequences.shape[1]))
        logits.append(torch.cat(out.logits))  # one tensor per turn, so the test's own data stays small
        sequence = out.sequences
        memory.append(rss())
    processed = sequence[:, :-1]  # the last answer token is not fed back
    expected = reference_logits(reference, processed, visibility(calls, CL))
    actual = torch.cat(logits)
    wanted = expected[[i - 1 for i in generated]]
    return {
        "tokens": processed.shape[1],
        "error": relative_error(actual, wanted),
        "same_tokens": [int(sequence[0, i]) for i in generated] == wanted.argmax(-1).tolist(),
        "rss_warm": memory[1],
        "rss_end": memory[-1],
    }


def exported_soak(turns: int, folder) -> dict:
    reference = tiny_llama()
    edge_from(reference, context_length=CL, ar_lengths=[AR, 1]).export("onnx-int4", folder, max_seq_len=AR)
    exported = EdgeLlamaForCausalLM.from_pretrained(folder)
    runner, window = exported.runner, exported.runner.new_window()
    errors, memory, seen = [], [], 0

    def step(chunk: torch.Tensor) -> torch.Tensor:
        got = runner.process(chunk, window)
        context = torch.tensor([window.tokens])  # what the program's cache holds now: kept tokens + the chunk
        with torch.no_grad():
            expected = reference(context).logits[0, -len(chunk) :]
        errors.append(relative_error(got, expected))
        return got[-1].argmax()

    for prompt in _prompts(turns, 160):
        token = step(prompt)
        for _ in range(ANSWER - 1):
            token = step(token.view(1))
        seen = window.num_seen
        memory.append(rss())
    return {"tokens": seen, "error": max(errors), "rss_warm": memory[1], "rss_end": memory[-1]}


def _report(name: str, result: dict) -> None:
    mib = 1024**2
    print(
        f"\n{name}: {result['tokens']} tokens ({result['tokens'] / CL:.1f} × CL), max relative error {result['error']:.2e}, "
        f"RSS {result['rss_warm'] / mib:.1f} MiB after turn 2 → {result['rss_end'] / mib:.1f} MiB after the last"
    )


@pytest.mark.parametrize("turns", [10, pytest.param(120, marks=pytest.mark.slow)])
def test_host_conversation_past_many_contexts(turns):
    result = host_soak(turns)
    _report("host", result)
    assert result["tokens"] > 4 * CL
    assert result["same_tokens"] and result["error"] <= 1e-4
    assert result["rss_end"] - result["rss_warm"] <= RSS_TOLERANCE


@pytest.mark.slow  # the export alone takes about a minute on this shared machine
@pytest.mark.parametrize("turns", [60])
def test_exported_conversation_past_many_contexts(turns, tmp_path):
    pytest.importorskip("onnxruntime")
    result = exported_soak(turns, tmp_path / "onnx-int4")
    _report("onnx-int4 export", result)
    assert result["tokens"] > 4 * CL
    assert result["error"] <= 1e-4
    assert result["rss_end"] - result["rss_warm"] <= RSS_TOLERANCE

"""Token-level perplexity over non-overlapping windows, the same code path for every model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..data import load_corpus


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    tokens: int
    windows: int
    window_length: int
    text: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@torch.no_grad()
def perplexity(
    model,
    tokenizer,
    text_source=None,
    window_length: int | None = None,
    max_windows: int | None = None,
    progress: bool = True,
) -> PerplexityResult:
    """exp(mean NLL) of every predicted token in non-overlapping windows of the evaluation text.

    `text_source` is the evaluation part of a corpus (default: the offline corpus, disjoint from
    calibration); documents are joined with blank lines. Works for any model whose forward takes
    `input_ids (1, n)` and returns logits: `LlamaForCausalLM`, edge models, quantized simulations.
    """
    corpus = load_corpus(text_source, "evaluation")
    ids = tokenizer(corpus.joined("\n\n"), return_tensors="pt", add_special_tokens=False).input_ids[0]
    window_length = window_length or getattr(model.config, "context_length", 1024)
    windows = ids.shape[0] // window_length
    if max_windows is not None:
        windows = min(windows, max_windows)
    if windows == 0:
        raise ValueError(f"{corpus.name} has {ids.shape[0]} tokens, fewer than one window of {window_length}")
    total_nll, total_tokens = 0.0, 0
    for index in tqdm(range(windows), desc="perplexity", disable=not progress):
        window = ids[index * window_length : (index + 1) * window_length].unsqueeze(0)
        logits = model(window).logits[0, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits, window[0, 1:], reduction="sum")
        total_nll += nll.item()
        total_tokens += window_length - 1
    return PerplexityResult(math.exp(total_nll / total_tokens), total_tokens, windows, window_length, corpus.name)

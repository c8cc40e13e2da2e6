"""Log-likelihoods of continuations, the one primitive every task is built from.

Works with any model whose forward takes `input_ids (1, n)` and returns `.logits (1, n, vocab)`:
`LlamaForCausalLM`, float edge models, quantized simulations and (as they land) exported artifacts.
Sequences longer than `max_length` lose tokens from the left, like lm-evaluation-harness does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Continuation:
    """log P(continuation | context): the sum over its tokens, and whether each token was the argmax."""

    logprob: float
    num_tokens: int
    is_greedy: bool


@torch.no_grad()
def last_token_logits(model, ids: list[int], max_length: int) -> torch.Tensor:
    """The float32 logits `(vocab,)` that follow `ids`."""
    ids = ids[-max_length:]
    return model(torch.tensor([ids], dtype=torch.long)).logits[0, -1].float()


@torch.no_grad()
def score_continuation(model, context: list[int], continuation: list[int], max_length: int) -> Continuation:
    """How likely `continuation` is after `context` (token ids, no special tokens added)."""
    if not continuation:
        raise ValueError("a continuation needs at least one token")
    ids = (context + continuation)[-(max_length + 1):]
    inputs = torch.tensor([ids[:-1]], dtype=torch.long)
    logits = model(inputs).logits[0, -len(continuation):].float()
    targets = torch.tensor(continuation, dtype=torch.long)
    logprobs = torch.log_softmax(logits, dim=-1)
    chosen = logprobs.gather(1, targets.unsqueeze(1)).squeeze(1)
    return Continuation(
        logprob=chosen.sum().item(),
        num_tokens=len(continuation),
        is_greedy=bool(torch.equal(logprobs.argmax(dim=-1), targets)),
    )


def kl_divergence(reference_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """KL(reference ‖ model) over the full vocabulary, in nats."""
    reference = torch.log_softmax(reference_logits.float(), dim=-1)
    actual = torch.log_softmax(logits.float(), dim=-1)
    return torch.sum(reference.exp() * (reference - actual)).item()

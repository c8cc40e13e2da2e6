"""An independent statement of the window rule, and the reference logits it implies.

Before a call of AR length `a`, the window keeps at most the `CL - a` most recent entries; each query
of the call sees those and the call's own tokens up to itself. Positions are absolute.
"""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM


def visibility(calls: list[tuple[int, int]], context_length: int) -> torch.Tensor:
    """Boolean `(n, n)`: may token i attend to token j, for calls `(ar_length, tokens)` in order."""
    total = sum(count for _, count in calls)
    visible = torch.zeros(total, total, dtype=torch.bool)
    window: list[int] = []
    seen = 0
    for ar_length, count in calls:
        window = window[max(0, len(window) - (context_length - ar_length)) :]
        for offset in range(count):
            position = seen + offset
            visible[position, window] = True
            visible[position, seen : position + 1] = True
        window += list(range(seen, seen + count))
        seen += count
    return visible


@torch.no_grad()
def reference_logits(model: LlamaForCausalLM, input_ids: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Logits of `LlamaForCausalLM` for `input_ids (1, n)` with attention restricted to `visible`."""
    mask = torch.zeros(visible.shape, dtype=model.dtype).masked_fill(~visible, torch.finfo(model.dtype).min)
    return model(input_ids, attention_mask=mask[None, None]).logits[0]

"""The host side of static-graph inference, shared by the torch model and every exported artifact.

The host owns what the graphs cannot: it slices a sequence into AR-sized chunks (the first chunk
right-aligned and padded), keeps the KV window, and builds the additive mask and the RoPE tables of
each call. A backend only executes one graph call.

The window rule (also what the reference tests rebuild): before a call of AR length `a`, the window
keeps the most recent `CL - a` entries at most; the call's queries see those plus the chunk's own
tokens up to themselves. Positions are absolute and keep growing when the window slides.
"""

from __future__ import annotations

import torch

from .backends import GraphBackend, GraphCall
from .rope import RopeTable


class KVWindow:
    """The static KV cache of one sequence, in the layout the graphs read.

    Slots `[0, num_valid)` hold the kept entries, oldest first, so the past of an AR-`a` call is the
    view `[..., : CL - a]`. Also serves as `past_key_values` in `generate()`.
    """

    is_compileable = False

    def __init__(self, num_layers: int, num_kv_heads: int, head_dim: int, context_length: int, dtype, device=None):
        self.context_length = context_length
        shape_k = (num_kv_heads, 1, head_dim, context_length)
        shape_v = (num_kv_heads, 1, context_length, head_dim)
        self.keys = [torch.zeros(shape_k, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape_v, dtype=dtype, device=device) for _ in range(num_layers)]
        self.num_valid = 0  # entries currently in the window
        self.num_seen = 0  # tokens processed so far = absolute position of the next token

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens processed so far (what transformers' generation loop asks a cache)."""
        return self.num_seen

    def make_room(self, past_length: int) -> None:
        """Drops the oldest entries so at most `past_length` remain."""
        drop = self.num_valid - past_length
        if drop <= 0:
            return
        for keys, values in zip(self.keys, self.values):
            keys[..., :past_length] = keys[..., drop : self.num_valid].clone()
            values[..., :past_length, :] = values[..., drop : self.num_valid, :].clone()
        self.num_valid = past_length

    def past(self, ar_length: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        past_length = self.context_length - ar_length
        return [k[..., :past_length] for k in self.keys], [v[..., :past_length, :] for v in self.values]

    def append(self, keys_out: list[torch.Tensor], values_out: list[torch.Tensor], count: int) -> None:
        """Stores the last `count` of the new entries a call returned (the padded ones are dropped)."""
        start, end = self.num_valid, self.num_valid + count
        for keys, values, new_k, new_v in zip(self.keys, self.values, keys_out, values_out):
            keys[..., start:end] = new_k[..., new_k.shape[-1] - count :]
            values[..., start:end, :] = new_v[..., new_v.shape[-2] - count :, :]
        self.num_valid = end
        self.num_seen += count


def plan_chunks(num_tokens: int, ar_lengths: list[int]) -> list[tuple[int, int]]:
    """Splits `num_tokens` into `(ar_length, valid_tokens)` calls.

    Full chunks use the largest AR; the remainder goes first, in the smallest AR that holds it
    (right-aligned, padded on the left). With ARs `[128, 1]`: 1 token → one AR-1 call, 5 → one padded
    AR-128 call, 129 → one AR-1 call then one AR-128 call.
    """
    largest = max(ar_lengths)
    full, remainder = divmod(num_tokens, largest)
    plan = []
    if remainder:
        plan.append((min(ar for ar in ar_lengths if ar >= remainder), remainder))
    plan.extend((largest, largest) for _ in range(full))
    return plan


class EdgeRunner:
    """Feeds token sequences through a `GraphBackend` chunk by chunk, keeping the KV window."""

    def __init__(self, backend: GraphBackend):
        self.backend = backend
        self.config = backend.config
        self.rope = RopeTable(self.config)

    @property
    def device(self) -> torch.device:
        return getattr(self.backend, "device", torch.device("cpu"))

    def new_window(self) -> KVWindow:
        config = self.config
        return KVWindow(
            num_layers=config.num_hidden_layers,
            num_kv_heads=config.num_key_value_heads,
            head_dim=config.head_dim,
            context_length=config.context_length,
            dtype=self.backend.dtype,
            device=self.device,
        )

    def process(self, token_ids: torch.LongTensor, window: KVWindow) -> torch.Tensor:
        """Runs `token_ids` (1-D) after what `window` holds; returns their logits `(len, vocab)`."""
        logits = []
        offset = 0
        for ar_length, count in plan_chunks(int(token_ids.shape[0]), self.config.ar_lengths):
            chunk = token_ids[offset : offset + count]
            call = self.build_call(chunk, window, ar_length)
            result = self.backend(call)
            window.append(result.keys_out, result.values_out, count)
            logits.append(result.logits[0, ar_length - count :])
            offset += count
        if not logits:
            return torch.empty(0, self.config.vocab_size, dtype=self.backend.dtype)
        return torch.cat(logits)

    def build_call(self, chunk: torch.LongTensor, window: KVWindow, ar_length: int) -> GraphCall:
        """The inputs of one call of the AR-`ar_length` graph for `chunk` (≤ AR tokens)."""
        config = self.config
        count, padding = chunk.shape[0], ar_length - chunk.shape[0]
        past_length = config.context_length - ar_length
        window.make_room(past_length)
        device, dtype = self.device, self.backend.dtype

        pad_id = config.pad_token_id if config.pad_token_id is not None else 0
        input_ids = torch.full((1, ar_length), pad_id, dtype=torch.long, device=device)
        input_ids[0, padding:] = chunk.to(device)

        positions = torch.zeros(ar_length, dtype=torch.long)
        positions[padding:] = torch.arange(window.num_seen, window.num_seen + count)
        cos, sin = self.rope(positions, dtype)

        mask = torch.full((ar_length, config.context_length), config.attention_mask_value, dtype=dtype)
        mask[padding:, : window.num_valid] = 0.0
        causal = torch.ones(count, count, dtype=torch.bool).tril()
        mask[padding:, past_length + padding :].masked_fill_(causal, 0.0)
        padded_rows = torch.arange(padding)
        mask[padded_rows, past_length + padded_rows] = 0.0  # a padded query sees itself: no empty softmax row

        past_keys, past_values = window.past(ar_length)
        return GraphCall(
            input_ids=input_ids,
            attention_mask=mask.view(1, 1, ar_length, -1).to(device),
            position_cos=cos.to(device),
            position_sin=sin.to(device),
            past_keys=past_keys,
            past_values=past_values,
            valid_past=window.num_valid,
        )

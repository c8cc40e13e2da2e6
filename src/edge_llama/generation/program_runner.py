"""The host side of programs that keep their KV cache themselves (ExecuTorch `.pte`, ONNX int4).

Such a program takes a chunk of up to `max_seq_len` tokens at an absolute position and returns its
logits; the cache of positions `0 … CL - 1` lives in the program (or in state the backend owns).
The host keeps what the NPU runner keeps for static graphs: the tokens of the window, and how far
the sequence has gone. When a chunk would run past CL, the window shifts: the program starts again
at position 0 with the most recent `KEEP_FRACTION` of CL tokens (RoPE only sees relative positions,
so a restart is a shift), then takes the chunk. Shifting in steps of a quarter window costs one
re-prefill per CL/4 generated tokens instead of one per token.
"""

from __future__ import annotations

from typing import Protocol

import torch

KEEP_FRACTION = 0.75


class ProgramBackend(Protocol):
    """Runs one chunk of a program with its own cache.

    `new_state()` returns an empty cache (or a token standing for the program's one cache);
    `holds(state)` says whether the program currently holds that cache (a program with a single
    internal cache holds only the last one it ran); `__call__` runs `tokens (T,)` at `start_pos`.
    """

    config: object
    dtype: torch.dtype
    max_seq_len: int

    def new_state(self) -> object: ...

    def holds(self, state: object) -> bool: ...

    def __call__(self, tokens: torch.LongTensor, start_pos: int, state: object) -> torch.Tensor: ...


class ProgramWindow:
    """The window of one sequence: the tokens in the program's cache, in order. Serves as
    `past_key_values` in `generate()`."""

    is_compileable = False

    def __init__(self, state: object):
        self.state = state
        self.tokens: list[int] = []  # what the cache holds now, position 0 first
        self.num_seen = 0  # tokens processed so far (absolute)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.num_seen


class ProgramRunner:
    """Feeds token sequences through a `ProgramBackend`, chunk by chunk, shifting the window past CL."""

    def __init__(self, backend: ProgramBackend):
        self.backend = backend
        self.config = backend.config

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def new_window(self) -> ProgramWindow:
        return ProgramWindow(self.backend.new_state())

    def process(self, token_ids: torch.LongTensor, window: ProgramWindow) -> torch.Tensor:
        """Runs `token_ids` (1-D) after what `window` holds; returns their logits `(len, vocab)`."""
        if window.tokens and not self.backend.holds(window.state):
            self._restart(window, window.tokens)  # another window ran in between: rebuild this one's cache
        context_length, step = self.config.context_length, self.backend.max_seq_len
        logits = []
        for start in range(0, int(token_ids.shape[0]), step):
            chunk = token_ids[start : start + step]
            if len(window.tokens) + len(chunk) > context_length:
                keep = min(int(context_length * KEEP_FRACTION), context_length - len(chunk))
                self._restart(window, window.tokens[len(window.tokens) - keep :] if keep > 0 else [])
            logits.append(self._run(chunk, window))
            window.num_seen += len(chunk)
        if not logits:
            return torch.empty(0, self.config.vocab_size, dtype=self.backend.dtype)
        return torch.cat(logits)

    def _run(self, chunk: torch.LongTensor, window: ProgramWindow) -> torch.Tensor:
        result = self.backend(chunk, len(window.tokens), window.state)
        window.tokens.extend(int(t) for t in chunk)
        return result

    def _restart(self, window: ProgramWindow, tokens: list[int]) -> None:
        window.state, window.tokens = self.backend.new_state(), []
        ids = torch.tensor(tokens, dtype=torch.long)
        for start in range(0, len(tokens), self.backend.max_seq_len):
            self._run(ids[start : start + self.backend.max_seq_len], window)

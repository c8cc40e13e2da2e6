"""Chat prompts and timed replies on top of `model.generate()`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers import TextStreamer


def encode_prompt(tokenizer, prompt: str, raw: bool = False, system: str | None = None) -> torch.LongTensor:
    """Token ids `(1, n)` of `prompt`, wrapped in the chat template unless `raw`."""
    if raw or not tokenizer.chat_template:
        return tokenizer(prompt, return_tensors="pt").input_ids
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return encoded["input_ids"]


class TimingStreamer(TextStreamer):
    """A `TextStreamer` that also records when the first and the last new token arrived."""

    def __init__(self, tokenizer, echo: bool = True, **decode_kwargs):
        super().__init__(tokenizer, skip_prompt=True, **decode_kwargs)
        self.echo = echo
        self.started = time.perf_counter()
        self.token_times: list[float] = []
        self._prompt_seen = False

    def put(self, value):
        if self._prompt_seen:
            self.token_times.extend([time.perf_counter()] * value.numel())
        self._prompt_seen = True
        super().put(value)

    def on_finalized_text(self, text: str, stream_end: bool = False):
        if self.echo:
            super().on_finalized_text(text, stream_end)


@dataclass
class Reply:
    """One generated answer and how fast it came."""

    prompt_tokens: int
    output_ids: list[int]
    text: str
    seconds_to_first_token: float
    decode_tokens_per_second: float
    stopped_on_eos: bool
    extras: dict = field(default_factory=dict)

    @property
    def output_tokens(self) -> int:
        return len(self.output_ids)


def generate_reply(
    model,
    tokenizer,
    input_ids: torch.LongTensor,
    max_new_tokens: int = 128,
    do_sample: bool = False,
    temperature: float = 0.7,
    top_p: float = 0.9,
    echo: bool = False,
) -> Reply:
    """Generates an answer to `input_ids`, optionally echoing it as it streams, and times it."""
    streamer = TimingStreamer(tokenizer, echo=echo, skip_special_tokens=True)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
    output = model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=max_new_tokens,
        streamer=streamer,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        **sampling,
    )
    new_ids = output[0, input_ids.shape[1] :].tolist()
    eos_ids = model.generation_config.eos_token_id
    eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids])
    times = streamer.token_times
    first = times[0] - streamer.started if times else float("nan")
    decode_rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else float("nan")
    return Reply(
        prompt_tokens=int(input_ids.shape[1]),
        output_ids=new_ids,
        text=tokenizer.decode(new_ids, skip_special_tokens=True).strip(),
        seconds_to_first_token=first,
        decode_tokens_per_second=decode_rate,
        stopped_on_eos=bool(new_ids) and new_ids[-1] in eos_ids,
    )

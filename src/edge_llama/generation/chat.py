"""Chat prompts and timed replies on top of `model.generate()`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer


def encode_prompt(tokenizer, prompt: str, raw: bool = False, system: str | None = None) -> torch.LongTensor:
    """Token ids `(1, n)` of `prompt`, wrapped in the chat template unless `raw`."""
    if raw or not tokenizer.chat_template:
        return tokenizer(prompt, return_tensors="pt").input_ids
    return encode_messages(tokenizer, [{"role": "user", "content": prompt}], system=system)


def encode_messages(tokenizer, messages: list[dict], system: str | None = None) -> torch.LongTensor:
    """Token ids `(1, n)` of a conversation in the chat template, ending with the assistant's cue.

    Without a chat template the turns are joined as plain text (one per line).
    """
    messages = ([{"role": "system", "content": system}] if system else []) + list(messages)
    if not tokenizer.chat_template:
        return tokenizer("\n".join(message["content"] for message in messages), return_tensors="pt").input_ids
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return encoded["input_ids"]


class TimingStreamer(TextStreamer):
    """A `TextStreamer` that also records when the first and the last new token arrived."""

    def __init__(self, tokenizer, echo: bool = True, on_text: Callable[[str], None] | None = None, **decode_kwargs):
        super().__init__(tokenizer, skip_prompt=True, **decode_kwargs)
        self.echo = echo
        self.on_text = on_text
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
        if self.on_text is not None and text:
            self.on_text(text)


class StopSignal(StoppingCriteria):
    """Ends `generate()` between two tokens once `request()` was called (from any thread).

    `generate()` asks its stopping criteria after every new token, so the token being computed when
    the request arrives is the last one: `tokens_computed` stops growing right there.
    """

    def __init__(self):
        self._requested = threading.Event()
        self.tokens_computed = 0

    def request(self) -> None:
        self._requested.set()

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        self.tokens_computed += 1
        return torch.full((input_ids.shape[0],), self.requested, dtype=torch.bool, device=input_ids.device)


@dataclass
class Reply:
    """One generated answer and how fast it came."""

    prompt_tokens: int
    output_ids: list[int]
    text: str
    seconds_to_first_token: float
    decode_tokens_per_second: float
    stopped_on_eos: bool
    stopped_on_request: bool = False
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
    on_text: Callable[[str], None] | None = None,
    stop: StopSignal | None = None,
    past_key_values=None,
) -> Reply:
    """Generates an answer to `input_ids`, optionally echoing it as it streams, and times it.

    `on_text` receives the answer's text piece by piece as it is decoded; `stop` ends generation
    early when requested; `past_key_values` (a `KVWindow` that already holds a prefix of
    `input_ids`) continues a conversation without recomputing it, and is updated in place.
    """
    streamer = TimingStreamer(tokenizer, echo=echo, on_text=on_text, skip_special_tokens=True)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
    output = model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=max_new_tokens,
        streamer=streamer,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        stopping_criteria=StoppingCriteriaList([stop]) if stop is not None else None,
        past_key_values=past_key_values,
        **sampling,
    )
    new_ids = output[0, input_ids.shape[1] :].tolist()
    eos_ids = model.generation_config.eos_token_id
    eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids])
    times = streamer.token_times
    first = times[0] - streamer.started if times else float("nan")
    decode_rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else float("nan")
    stopped_on_eos = bool(new_ids) and new_ids[-1] in eos_ids
    return Reply(
        prompt_tokens=int(input_ids.shape[1]),
        output_ids=new_ids,
        text=tokenizer.decode(new_ids, skip_special_tokens=True).strip(),
        seconds_to_first_token=first,
        decode_tokens_per_second=decode_rate,
        stopped_on_eos=stopped_on_eos,
        stopped_on_request=stop is not None and stop.requested and not stopped_on_eos,
    )

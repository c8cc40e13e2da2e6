"""What the web demo serves, without the web: one loaded checkpoint, its conversations, one answer at a time.

The chat template and the history live here, on the server. A conversation keeps the `KVWindow`
its last answer left, so the next turn only computes the new tokens and the window slides over the
context exactly as it does across `generate()` calls; when the re-templated history does not start
with what the window holds (a retokenized answer), the turn starts a fresh window over the whole
history instead, which slides the same way.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..generation.chat import StopSignal, encode_messages, generate_reply

logger = logging.getLogger(__name__)

MAX_CONVERSATIONS = 32  # oldest dropped first; each holds a KV window


class ChatError(Exception):
    """A request the demo cannot answer; the message is shown on the page as is."""

    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message)
        self.status_code = status_code


@dataclass
class ChatOptions:
    """How answers are generated (the `edge-llama demo` options)."""

    context_length: int | None = None
    max_new_tokens: int = 256
    system: str | None = None
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9


@dataclass
class Conversation:
    messages: list[dict] = field(default_factory=list)
    token_ids: torch.LongTensor | None = None  # the prompt and answer of the last turn, as the model saw them
    window: object | None = None  # the KVWindow after the last turn


@dataclass
class PendingAnswer:
    """An answer that passed the checks and holds the generation lock until `ChatService.answer` ends."""

    conversation: Conversation
    prompt: str
    input_ids: torch.LongTensor
    window: object
    reused_tokens: int
    stop: StopSignal = field(default_factory=StopSignal)


class ChatService:
    """Loads a checkpoint in the background and answers chat turns with it, one at a time.

    ```python
    >>> service = ChatService("DEFAULT", ChatOptions(context_length=1024))
    >>> service.wait_until_loaded()
    >>> pending = service.prepare(service.new_conversation(), "What is the capital of France?")
    >>> service.answer(pending, on_text=print)["text"]
    ```
    """

    def __init__(self, checkpoint: str, options: ChatOptions | None = None):
        self.options = options or ChatOptions()
        self._state_lock = threading.Lock()  # guards the fields below
        self._generation_lock = threading.Lock()  # one answer (or load) at a time: the model is not reentrant
        self._conversations: OrderedDict[str, Conversation] = OrderedDict()
        self._current: PendingAnswer | None = None
        self._tokens_done = 0
        self._loaded = threading.Event()
        self.model = self.tokenizer = None
        self.checkpoint = checkpoint
        self.load_error: str | None = None
        self.load(checkpoint)

    # -- the checkpoint ------------------------------------------------------------------
    def load(self, checkpoint: str) -> None:
        """Starts loading `checkpoint` in a background thread; the old model serves no more answers."""
        if not checkpoint or not checkpoint.strip():
            raise ChatError("no checkpoint given: type an alias (DEFAULT), a folder or a hub id")
        if not self._generation_lock.acquire(blocking=False):
            busy = "an answer is being generated: press stop first" if self.model else f"{self.checkpoint} is still loading"
            raise ChatError(f"{busy}, then load", status_code=409)
        with self._state_lock:
            self.checkpoint, self.load_error = checkpoint.strip(), None
            self.model = self.tokenizer = None
            self._conversations.clear()
            self._loaded.clear()
        threading.Thread(target=self._load, args=(self.checkpoint,), name="edge-llama-web-load", daemon=True).start()

    def _load(self, checkpoint: str) -> None:
        from ..checkpoints import load_tokenizer
        from ..modeling_edge_llama import EdgeLlamaForCausalLM

        try:
            logger.info("Loading %s …", checkpoint)
            tokenizer = load_tokenizer(checkpoint)  # first: a missing tokenizer should fail before the slow part
            model = EdgeLlamaForCausalLM.from_pretrained(checkpoint, context_length=self.options.context_length)
            with self._state_lock:
                self.model, self.tokenizer = model.eval(), tokenizer
            logger.info("Loaded %s: %s", checkpoint, self.backend_description)
        except Exception as error:  # noqa: BLE001 - any failure is shown on the page; the server keeps serving
            message = f"{checkpoint} failed to load: {_one_line(error)}"
            logger.warning("%s", message)
            with self._state_lock:
                self.load_error = message
        finally:
            self._loaded.set()
            self._generation_lock.release()

    def wait_until_loaded(self, timeout: float | None = None) -> bool:
        """Blocks until the current load finished (either way); False on timeout."""
        return self._loaded.wait(timeout)

    @property
    def backend_description(self) -> str:
        """What runs the graphs, for people (the page's status line)."""
        if self.model is None:
            return ""
        return getattr(self.model.runner.backend, "description", "host (PyTorch)")

    def info(self) -> dict:
        """The checkpoint's state and the server-side token counter, as the page and tests read them."""
        with self._state_lock:
            model, current = self.model, self._current
            state = "ready" if model is not None else "failed" if self.load_error else "loading"
            info = {
                "checkpoint": self.checkpoint,
                "state": state,
                "error": self.load_error,
                "generating": current is not None,
                # tokens generate() computed since the server started: stops growing when an answer stops
                "tokens_computed": self._tokens_done + (current.stop.tokens_computed if current else 0),
                "max_new_tokens": self.options.max_new_tokens,
            }
        if model is not None:
            config = model.config
            info.update(
                backend=self.backend_description,
                context_length=config.context_length,
                ar_lengths=list(config.ar_lengths),
                num_layers=config.num_hidden_layers,
            )
        return info

    # -- conversations ---------------------------------------------------------------------
    def new_conversation(self) -> str:
        conversation_id = uuid.uuid4().hex
        with self._state_lock:
            self._conversations[conversation_id] = Conversation()
            while len(self._conversations) > MAX_CONVERSATIONS:
                self._conversations.popitem(last=False)
        return conversation_id

    def messages(self, conversation_id: str) -> list[dict]:
        return list(self._conversation(conversation_id).messages)

    def _conversation(self, conversation_id: str) -> Conversation:
        with self._state_lock:
            conversation = self._conversations.get(conversation_id)
        if conversation is None:
            raise ChatError("this conversation is gone (a new checkpoint was loaded?): press New chat", status_code=404)
        return conversation

    # -- answers ---------------------------------------------------------------------------
    def prepare(self, conversation_id: str, prompt: str) -> PendingAnswer:
        """Checks a turn and takes the generation lock; `answer()` must follow (it releases the lock)."""
        if not prompt or not prompt.strip():
            raise ChatError("the prompt is empty: type a question first")
        if not self._generation_lock.acquire(blocking=False):
            if self.model is None:
                raise ChatError(f"{self.checkpoint} is still loading: wait a moment", status_code=503)
            raise ChatError("another answer is being generated: wait for it or press stop", status_code=409)
        try:
            # Under the lock: no load can swap the model (and drop the conversations) from here on.
            conversation = self._conversation(conversation_id)
            if self.model is None:
                raise ChatError(self.load_error or f"{self.checkpoint} did not load", status_code=503)
            pending = self._plan(conversation, prompt.strip())
        except BaseException:
            self._generation_lock.release()
            raise
        with self._state_lock:
            self._current = pending  # from now on a stop request reaches it, even before its first token
        return pending

    def _plan(self, conversation: Conversation, prompt: str) -> PendingAnswer:
        model, tokenizer, options = self.model, self.tokenizer, self.options
        context_length = model.config.context_length
        turn = {"role": "user", "content": prompt}
        alone = encode_messages(tokenizer, [turn], system=options.system).shape[1]
        if alone >= context_length:
            raise ChatError(
                f"the prompt is {alone} tokens with the chat template, but the context holds {context_length} "
                "(and the answer needs room too): shorten it, or restart with a larger --context-length"
            )
        input_ids = encode_messages(tokenizer, [*conversation.messages, turn], system=options.system)
        window, reused = conversation.window, 0
        if window is not None:
            reused = window.get_seq_length()
            held = conversation.token_ids
            if not (reused < input_ids.shape[1] and reused <= held.shape[0] and torch.equal(input_ids[0, :reused], held[:reused])):
                window, reused = None, 0
        if window is None:
            window = model.runner.new_window()
        return PendingAnswer(conversation, prompt, input_ids, window, reused)

    def answer(self, pending: PendingAnswer, on_text: Callable[[str], None] | None = None) -> dict:
        """Generates the answer of a prepared turn (blocking), streaming its text to `on_text`.

        Returns the answer's text and its status line: backend, tokens, time to first token, decode rate
        and why it ended.
        """
        conversation, options = pending.conversation, self.options
        try:
            reply = generate_reply(
                self.model,
                self.tokenizer,
                pending.input_ids,
                max_new_tokens=options.max_new_tokens,
                do_sample=options.do_sample,
                temperature=options.temperature,
                top_p=options.top_p,
                on_text=on_text,
                stop=pending.stop,
                past_key_values=pending.window,
            )
        except BaseException:
            conversation.window = conversation.token_ids = None  # the window's state is unknown now
            raise
        finally:
            with self._state_lock:
                self._tokens_done += pending.stop.tokens_computed
                self._current = None
            self._generation_lock.release()
        conversation.messages += [{"role": "user", "content": pending.prompt}, {"role": "assistant", "content": reply.text}]
        conversation.token_ids = torch.cat([pending.input_ids[0], torch.tensor(reply.output_ids, dtype=torch.long)])
        conversation.window = pending.window
        ended = "stopped" if reply.stopped_on_request else "end of turn" if reply.stopped_on_eos else "max tokens"
        return {
            "text": reply.text,
            "backend": self.backend_description,
            "prompt_tokens": reply.prompt_tokens,
            "reused_tokens": pending.reused_tokens,
            "output_tokens": reply.output_tokens,
            "tokens_computed": pending.stop.tokens_computed,
            "seconds_to_first_token": _finite(reply.seconds_to_first_token),
            "tokens_per_second": _finite(reply.decode_tokens_per_second),
            "ended": ended,
        }

    def stop(self, conversation_id: str | None = None) -> bool:
        """Asks the answer being generated (of `conversation_id`, if given) to end after its current token."""
        with self._state_lock:
            current = self._current
            conversation = self._conversations.get(conversation_id) if conversation_id else None
        if current is None or (conversation_id is not None and current.conversation is not conversation):
            return False
        current.stop.request()
        return True


def _finite(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


def _one_line(error: BaseException) -> str:
    from ..errors import EdgeLlamaError

    text = " ".join(str(error).split())
    return text if isinstance(error, EdgeLlamaError) else f"{type(error).__name__}: {text}"

"""lm-evaluation-harness on edge models: float, quantized (simulated) or any other causal LM.

lm-eval's `HFLM` drives our models as they are, with three settings it cannot infer:

- `batch_size=1`: the static graphs take one unpadded sequence (`forward` refuses batches and padding).
- `max_length=config.context_length`: lm-eval reads `max_position_embeddings`, but the edge model
  attends over a static window of `context_length` positions. Longer inputs would slide the window
  and score every token after it with a truncated past; with the window's length lm-eval truncates
  them from the left instead, as it does for any model at its limit.
- `backend="causal"`: lm-eval does not know the `edge_llama` model type and would guess (with a warning).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import EdgeLlamaError

if TYPE_CHECKING:
    from lm_eval.models.huggingface import HFLM
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def harness_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None = None) -> HFLM:
    """`model` wrapped for `lm_eval.simple_evaluate`, one sequence at a time within its context window.

    Args:
        model: an `EdgeLlamaForCausalLM`, quantized or not; other causal LMs work too and keep
            lm-eval's own length limit.
        tokenizer: defaults to the one of the checkpoint the model was loaded from.

    Example:

    ```python
    >>> import lm_eval
    >>> from edge_llama import EdgeLlamaForCausalLM
    >>> from edge_llama.evaluation.harness import harness_model
    >>> model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT").quantize("8da4w")
    >>> results = lm_eval.simple_evaluate(model=harness_model(model), tasks=["arc_easy"])
    >>> results["results"]["arc_easy"]["acc,none"]
    ```
    """
    try:
        from lm_eval.models.huggingface import HFLM
    except ImportError as error:
        raise EdgeLlamaError(
            f"harness_model needs lm-evaluation-harness, which could not be imported ({error}). "
            "Install it with: pip install 'edge-llama[eval]'"
        ) from error
    if tokenizer is None:
        from ..checkpoints import load_tokenizer

        if not model.name_or_path:
            raise EdgeLlamaError(
                f"{type(model).__name__} was not loaded from a checkpoint, so it has no tokenizer to default to; "
                "pass one: harness_model(model, tokenizer)."
            )
        tokenizer = load_tokenizer(model.name_or_path)
    return HFLM(
        pretrained=model,
        tokenizer=tokenizer,
        backend="causal",
        batch_size=1,
        max_length=getattr(model.config, "context_length", None),
    )


__all__ = ["harness_model"]

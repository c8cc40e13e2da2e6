"""Configuration of the edge (NPU-shaped) Llama model."""

from __future__ import annotations

import math

import warnings

from huggingface_hub.dataclasses import strict
from transformers import LlamaConfig

from .errors import EdgeLlamaConfigError

# Keys of a plain Llama config.json that describe where it came from rather than the model.
_PROVENANCE_KEYS = ("model_type", "architectures", "transformers_version", "quantization_config", "_name_or_path")


@strict
class EdgeLlamaConfig(LlamaConfig):
    r"""A [`LlamaConfig`] plus the static-graph geometry and the switches of the NPU rewrite.

    Args:
        context_length (`int`, defaults to 4096):
            CL: the number of positions one graph call attends over (past KV cache + new tokens).
        ar_lengths (`list[int]`, defaults to `[128, 1]`):
            The AR (autoregression) lengths the model is instantiated for: how many new tokens one
            graph call takes. The largest is the prompt processor, `1` the token generator.
        use_split_head_attention (`bool`, defaults to `True`):
            One projection per query head and per KV head (GQA by reference, no copy). Off: fused
            projections and batched multi-head attention.
        use_conv_projections (`bool`, defaults to `True`):
            Projections as 1x1 `Conv2d` on NCHW activations (channels = hidden size, H = 1, sequence in
            W) with rank-4 RMSNorm. Off: `Linear` on `(batch, seq, hidden)`.
        attention_mask_value (`float`, defaults to -50.0):
            The additive value of a masked position. A finite value keeps the mask quantizable
            (16-bit activations cannot represent -inf).
        num_parts (`int`, *optional*):
            How many graphs `split()` and the device exports cut the model into (the embedding, then
            the decoder layers spread over the rest). Default: the model preset's, else
            `default_num_parts()`: parts of at most about 1.2 GB of 4-bit weights.

    Example:

    ```python
    >>> from edge_llama import EdgeLlamaConfig
    >>> config = EdgeLlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
    ...                          intermediate_size=128, vocab_size=256, context_length=64, ar_lengths=[16, 1])
    >>> config.prompt_ar_length, config.token_ar_length
    (16, 1)
    ```
    """

    model_type = "edge_llama"

    context_length: int = 4096
    ar_lengths: list[int] | None = None
    use_split_head_attention: bool = True
    use_conv_projections: bool = True
    attention_mask_value: float = -50.0
    num_parts: int | None = None

    def __post_init__(self, **kwargs):
        if self.ar_lengths is None:
            self.ar_lengths = [128, 1]
        self.ar_lengths = sorted({int(ar) for ar in self.ar_lengths}, reverse=True)
        self._validate_geometry()  # before the strict validators, so the error keeps its type
        super().__post_init__(**kwargs)

    def _validate_geometry(self) -> None:
        if self.context_length < 2:
            raise EdgeLlamaConfigError(f"context_length must be at least 2, got {self.context_length}.")
        too_long = [ar for ar in self.ar_lengths if ar >= self.context_length]
        if too_long or min(self.ar_lengths) < 1:
            raise EdgeLlamaConfigError(
                f"every AR length must satisfy 1 <= AR < context_length; got ar_lengths={self.ar_lengths} "
                f"with context_length={self.context_length}. Raise context_length or lower the AR length "
                "(the graph keeps CL - AR past entries, so AR must leave room for at least one)."
            )
        if self.num_parts is not None and not 2 <= self.num_parts <= self.num_hidden_layers + 1:
            raise EdgeLlamaConfigError(
                f"num_parts must be from 2 to num_hidden_layers + 1 = {self.num_hidden_layers + 1}, got {self.num_parts}."
            )
        if self.context_length > self.max_position_embeddings:
            warnings.warn(
                f"context_length={self.context_length} exceeds the model's max_position_embeddings="
                f"{self.max_position_embeddings}; quality past the trained length is not guaranteed.",
                stacklevel=2,
            )

    def default_num_parts(self, part_bytes: float = 1.2e9) -> int:
        """The embedding as part 1, then one part per `part_bytes` of 4-bit decoder weights (at least one).

        HTP caps one graph at about 2 GB; fewer, larger parts mean fewer graph switches per token. With
        1.2 GB this gives AI Hub's splits: Llama 2 7B → 4, Llama 3 8B → 5, Llama 3.2 3B → 3.
        """
        hidden, kv_width = self.hidden_size, self.num_key_value_heads * self.head_dim
        per_layer = 2 * hidden * hidden + 2 * hidden * kv_width + 3 * hidden * self.intermediate_size
        decoder_bytes = self.num_hidden_layers * per_layer / 2 + self.vocab_size * hidden  # lm_head at 8 bit
        return 1 + max(1, math.ceil(decoder_bytes / part_bytes))

    @property
    def prompt_ar_length(self) -> int:
        """The largest AR length: the prompt processor's chunk size."""
        return self.ar_lengths[0]

    @property
    def token_ar_length(self) -> int:
        """The smallest AR length: the token generator's step (usually 1)."""
        return self.ar_lengths[-1]

    @classmethod
    def from_llama_config(cls, llama_config: LlamaConfig, **edge_kwargs) -> EdgeLlamaConfig:
        """Builds an edge config from a plain Llama config, keeping every architecture field.

        Fields of the edge config that `edge_kwargs` sets to `None` keep their defaults (or the values
        already stored in `llama_config` when it is an edge config itself).
        """
        values = {k: v for k, v in llama_config.to_dict().items() if k not in _PROVENANCE_KEYS}
        values.update({k: v for k, v in edge_kwargs.items() if v is not None})
        return cls(**values)

    def to_llama_config(self) -> LlamaConfig:
        """The plain Llama config of the same architecture (what `LlamaForCausalLM` needs)."""
        edge_fields = set(EdgeLlamaConfig.__dataclass_fields__) - set(LlamaConfig.__dataclass_fields__)
        values = {k: v for k, v in self.to_dict().items() if k not in _PROVENANCE_KEYS and k not in edge_fields}
        return LlamaConfig(**values)


__all__ = ["EdgeLlamaConfig"]

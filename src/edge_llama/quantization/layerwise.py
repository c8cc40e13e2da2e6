"""Calibration one decoder layer at a time: only that layer and its calibration activations sit on the
execution device (a GPU); the rest of the model stays on the host.

The all-in-memory path runs every calibration sequence through the whole simulated graph, AR chunk by
AR chunk. Here the same arithmetic is reordered: the calibration activations of all sequences are
carried from layer to layer, and each layer runs every chunk of every sequence before the next layer
starts. Each layer keeps its own KV windows, sliding exactly like the host runner's
(`generation.runner.KVWindow`), and every chunk position sees the runner's own mask and RoPE tables.

Three streams of activations can be carried:

- `calibration`: weights quantized, activation quantizers observing only (aimet's pass-through
  calibration mode), each layer attending over its own cache — what `sim.compute_encodings` sees;
- `float`: no quantizers at all — the float model, whose KV entries Sequential MSE replays;
- `seq_mse`: weights quantized, activations float, attending over the float model's cache — what
  aimet's Sequential MSE feeds each projection (its calibration calls are recorded from the float model).

Encodings are identical to the all-in-memory path's (tested on a tiny model), because every quantizer
sees the same tensors and min/max statistics do not depend on the order they are seen in.

Progress is written after every layer (`LayerProgress`): rerunning with the same `progress_dir`
continues after the last finished layer and ends with the same encodings.

With several GPUs visible and `device="cuda"`, accelerate's balanced device map (what transformers'
`device_map="balanced"` computes) says which GPU executes each block: embedding, every decoder layer,
final norm + lm_head (`plan_block_devices`). Layers still run one after another, so this spreads
memory, not time. With one GPU, or a device with an index (`"cuda:1"`), everything runs there.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import EdgeLlamaError
from ..generation import EdgeRunner, TorchGraphBackend
from ..generation.runner import KVWindow, plan_chunks
from .seq_mse import StopForward

HEAD_ROWS = 8  # sequences per lm_head call


@dataclass
class _Chunk:
    """One AR call position, the same for every sequence of a group."""

    ar_length: int
    count: int  # valid tokens (the rest is left padding)
    offset: int  # where the chunk starts in the sequence
    mask: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor


@dataclass
class _Group:
    """Calibration sequences of one length: they share the chunk plan, masks and RoPE tables."""

    tokens: torch.Tensor  # (sequences, length)
    chunks: list[_Chunk]


@dataclass
class LayerwiseReport:
    """Where the time went (seconds) and how much the execution device held."""

    seconds: dict[str, float] = field(default_factory=dict)
    resumed_from_layer: int = 0
    peak_device_bytes: int | None = None  # the largest of the execution devices' peaks
    layer_devices: list[str] = field(default_factory=list)  # where each decoder layer ran

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds


def _plan(model, batches: list[torch.Tensor], device: torch.device) -> list[_Group]:
    """Groups the calibration sequences by length; each group's chunks carry the runner's inputs."""
    runner = EdgeRunner(TorchGraphBackend(model, full_window=True))
    by_length: dict[int, list[torch.Tensor]] = {}
    for tokens in batches:
        flat = tokens.reshape(-1)
        by_length.setdefault(int(flat.shape[0]), []).append(flat)
    groups = []
    config = model.config
    for length, sequences in by_length.items():
        clock = KVWindow(0, config.num_key_value_heads, config.head_dim, config.context_length, model.dtype)
        chunks, offset = [], 0
        for ar_length, count in plan_chunks(length, config.ar_lengths):
            call = runner.build_call(sequences[0][offset : offset + count], clock, ar_length)
            chunks.append(_Chunk(ar_length, count, offset, call.attention_mask.to(device),
                                 call.position_cos.to(device), call.position_sin.to(device)))
            clock.append([], [], count)
            offset += count
        groups.append(_Group(torch.stack(sequences), chunks))
    return groups


def _window(config, batch: int, dtype, device) -> KVWindow:
    """A one-layer KV window holding `batch` sequences in the graphs' cache layout (batch on dim 1)."""
    window = KVWindow(1, config.num_key_value_heads, config.head_dim, config.context_length, dtype, device)
    window.keys = [torch.zeros(config.num_key_value_heads, batch, config.head_dim, config.context_length, dtype=dtype, device=device)]
    window.values = [torch.zeros(config.num_key_value_heads, batch, config.context_length, config.head_dim, dtype=dtype, device=device)]
    return window


def _input_ids(model, group: _Group, chunk: _Chunk, rows: slice, device) -> torch.Tensor:
    config = model.config
    tokens = group.tokens[rows, chunk.offset : chunk.offset + chunk.count]
    pad_id = config.pad_token_id if config.pad_token_id is not None else 0
    ids = torch.full((tokens.shape[0], chunk.ar_length), pad_id, dtype=torch.long)
    ids[:, chunk.ar_length - chunk.count :] = tokens
    return ids.to(device)


def _batches_of(group: _Group, batch_size: int):
    total = group.tokens.shape[0]
    for start in range(0, total, batch_size):
        yield slice(start, min(start + batch_size, total))


def execution_devices(device: torch.device | str | None, home: torch.device) -> list[torch.device]:
    """The devices blocks may run on: every visible GPU for a bare `"cuda"`, else just `device`."""
    device = torch.device(device) if device is not None else home
    if device.type == "cuda" and device.index is None:
        return [torch.device("cuda", index) for index in range(max(1, torch.cuda.device_count()))]
    return [device]


def plan_block_devices(model, max_memory: dict[int | str, int]) -> dict[str, int | str]:
    """Which of `max_memory`'s devices (accelerate's keys: GPU indices, `"cpu"`) executes each block.

    Block names are module names: `model.embed_tokens`, `model.layers.<i>`, `model.norm`, `lm_head`.
    The split is accelerate's balanced one (`get_balanced_memory`, then `infer_auto_device_map`), with
    a decoder layer never split across devices. Only one block is resident at a time here, so
    `max_memory` describes how to balance, not what must fit.
    """
    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    no_split = list(getattr(model, "_no_split_modules", None) or []) or ["EdgeLlamaDecoderLayer"]
    if len(max_memory) > 1:
        max_memory = get_balanced_memory(model, max_memory=dict(max_memory), no_split_module_classes=no_split)
    device_map = infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=no_split)
    plan = {}
    for block in _blocks(model):
        owner = max((name for name in device_map if name == "" or block == name or block.startswith(name + ".")), key=len, default=None)
        if owner is None:
            raise EdgeLlamaError(f"accelerate's device map {device_map} places no module holding {block}")
        plan[block] = device_map[owner]
    return plan


def _blocks(model) -> list[str]:
    return ["model.embed_tokens", *(f"model.layers.{i}" for i in range(len(model.model.layers))), "model.norm", "lm_head"]


def _block_devices(model, devices: list[torch.device]) -> dict[str, torch.device]:
    if len(devices) == 1:
        return {block: devices[0] for block in _blocks(model)}
    # The whole model's size split evenly (one block at a time is resident: capacities do not matter).
    size = sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))
    plan = plan_block_devices(model, {index: size for index in range(len(devices))})
    if any(key not in range(len(devices)) for key in plan.values()):
        raise EdgeLlamaError(f"accelerate placed blocks outside {[str(d) for d in devices]}: {sorted(set(map(str, plan.values())))}")
    return {block: devices[key] for block, key in plan.items()}


class LayerwiseCalibrator:
    """Drives one aimet simulation (built over `model`) layer by layer; see the module docstring.

    `device` executes; the model's weights stay where they are (the host) except for the module being
    processed. `batch_size` sequences go through a layer together (a trade of memory for speed).
    """

    def __init__(self, model, batches: list[torch.Tensor], device: torch.device | str | None = None, batch_size: int = 8,
                 use_seq_mse: bool = False, seq_mse_candidates: int = 20, progress_dir=None,
                 on_layer_done: Callable[[int], None] | None = None, progress: bool = True):
        self.model = model
        self.config = model.config
        self.home = model.model.embed_tokens.weight.device
        self.devices = execution_devices(device, self.home)
        self.block_devices = _block_devices(model, self.devices)
        self.device = self.block_devices["model.embed_tokens"]  # where the block being processed runs
        self.batch_size = max(1, int(batch_size))
        self.use_seq_mse = use_seq_mse
        self.candidates = seq_mse_candidates
        self.on_layer_done = on_layer_done
        self.show_progress = progress
        self.report = LayerwiseReport()
        self.groups = _plan(model, batches, self.device)
        self.store = None
        if progress_dir is not None:
            from .layer_progress import LayerProgress

            self.store = LayerProgress(progress_dir, model, batches, use_seq_mse, seq_mse_candidates)

    # -- the whole run -------------------------------------------------------------------------
    def run(self) -> LayerwiseReport:
        from .aimet_engine import layer_quantizers

        layers = self.model.model.layers
        start, activations = 0, None
        if self.store is not None:
            start, activations = self.store.load(self.model, self.device)
            self.report.resumed_from_layer = start
        with self._timed("embedding"):
            self._embedding(compute_inputs=activations is None)
        if activations is not None:
            self.activations = activations
        for index in range(start, len(layers)):
            layer = layers[index]
            self._move_to(self.block_devices[f"model.layers.{index}"])
            with self._on_device(layer):
                if self.use_seq_mse:
                    with self._timed("seq_mse"):
                        self._seq_mse(layer)
                with self._timed("calibration"):
                    self._calibrate(layer)
            if self.store is not None:
                with self._timed("progress_save"):
                    self.store.save(index, layer_quantizers(self.model, index), self.activations)
            if self.on_layer_done is not None:
                self.on_layer_done(index)
            if self.show_progress:
                print(f"layer {index + 1}/{len(layers)} done ({self._seconds_so_far():.1f} s)", flush=True)
        self._move_to(self.block_devices["lm_head"])
        with self._timed("head"):
            self._head()
        self.report.layer_devices = [str(self.block_devices[f"model.layers.{i}"]) for i in range(len(layers))]
        peaks = [torch.cuda.max_memory_allocated(d) for d in self.devices if d.type == "cuda"]
        self.report.peak_device_bytes = max(peaks) if peaks else None
        return self.report

    # -- phases ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _embedding(self, compute_inputs: bool) -> None:
        """Embedding weight encodings, and the first layer's input in every stream."""
        from aimet_torch import nn as aimet_nn
        from aimet_torch.utils import remove_param_quantizers

        embedding = self.model.model.embed_tokens
        layout = self.model.model.layout
        with self._on_device(embedding):
            with aimet_nn.compute_encodings(embedding):
                pass  # param encodings are computed on entry
            if not compute_inputs:
                return
            def embed():
                return self._pack([[layout.from_sequence(embedding(_input_ids(self.model, g, c, rows, self.device)))
                                    for rows in _batches_of(g, self.batch_size)] for g in self.groups for c in g.chunks])

            self.activations = {"calibration": embed()}
            if self.use_seq_mse:  # Sequential MSE leaves the embedding in float, like the float model
                with remove_param_quantizers(embedding):
                    self.activations["seq_mse"] = self.activations["float"] = embed()

    @torch.no_grad()
    def _calibrate(self, layer: nn.Module) -> None:
        from aimet_torch import nn as aimet_nn

        with aimet_nn.compute_encodings(layer):
            self.activations["calibration"] = self._run(layer, self.activations["calibration"])

    @torch.no_grad()
    def _head(self) -> None:
        """Final norm and lm_head see the calibration stream: their weight and output encodings."""
        from aimet_torch import nn as aimet_nn

        norm, lm_head, layout = self.model.model.norm, self.model.lm_head, self.model.model.layout
        head = nn.ModuleList([norm, lm_head])
        with self._on_device(head), aimet_nn.compute_encodings(head):
            for hidden in self._each_batch(self.activations["calibration"]):
                for rows in hidden.split(HEAD_ROWS):  # logits of a whole batch can outgrow the layer's memory
                    lm_head(layout.to_sequence(norm(rows)))

    @torch.no_grad()
    def _seq_mse(self, layer: nn.Module) -> None:
        """Sequential MSE over this layer's projections, stage by stage (projections that read the same
        tensor form one stage), each seeing the projections before it already on their chosen grids."""
        from aimet_torch.nn import BaseQuantizationMixin
        from aimet_torch.utils import remove_activation_quantizers, remove_all_quantizers, remove_param_quantizers

        from .seq_mse import MAX_BITS, GramAccumulator, search_weight_grid

        qmodules = [m for m in layer.modules() if isinstance(m, BaseQuantizationMixin)]
        for module in qmodules:  # min-max start, as aimet's Sequential MSE begins
            module._compute_param_encodings(overwrite=True)
        projections = [m for m in qmodules if isinstance(m, (nn.Conv2d, nn.Linear))]
        unsupported = [m for m in qmodules if not isinstance(m, (nn.Conv2d, nn.Linear))]
        float_entries: list = []
        with remove_all_quantizers(layer):
            float_out = self._run(layer, self.activations["float"], keep_entries=float_entries)
        with remove_activation_quantizers(qmodules), remove_param_quantizers(unsupported):
            for stage in self._stages(layer, projections):
                searched = [m for m in stage if (q := m.param_quantizers["weight"]) is not None and q.bitwidth <= MAX_BITS]
                if not searched:
                    continue
                gram = GramAccumulator(stage[0], self.device)
                handle = stage[0].register_forward_pre_hook(gram.hook)
                try:
                    self._run(layer, self.activations["seq_mse"], past_entries=float_entries, stop=True)
                finally:
                    handle.remove()
                for module in searched:
                    search_weight_grid(module, gram.matrix, self.candidates)
                del gram
            self.activations["seq_mse"] = self._run(layer, self.activations["seq_mse"], past_entries=float_entries)
        self.activations["float"] = float_out

    def _stages(self, layer: nn.Module, projections: list[nn.Module]) -> list[list[nn.Module]]:
        """Projections in the order the layer calls them, grouped by the input tensor they share."""
        from aimet_torch.utils import remove_all_quantizers

        order: list[tuple[nn.Module, torch.Tensor]] = []

        def record(module, inputs):
            order.append((module, inputs[0]))  # the tensor itself: ids of freed tensors get reused

        handles = [m.register_forward_pre_hook(record) for m in projections]
        try:
            with remove_all_quantizers(layer):
                first = self.activations["float"][0][0][0][:1]
                chunk = self.groups[0].chunks[0]
                window = _window(self.config, 1, first.dtype, self.device)
                window.make_room(self.config.context_length - chunk.ar_length)
                past_k, past_v = window.past(chunk.ar_length)
                layer(first, chunk.cos, chunk.sin, chunk.mask, past_k[0], past_v[0])
        finally:
            for handle in handles:
                handle.remove()
        stages: list[list[nn.Module]] = []
        last_input = None
        for module, tensor in order:
            if stages and tensor is last_input:
                stages[-1].append(module)
            else:
                stages.append([module])
            last_input = tensor
        return stages

    # -- one layer over every chunk of every sequence --------------------------------------------
    def _run(self, layer, stream, keep_entries: list | None = None, past_entries: list | None = None, stop: bool = False):
        """Runs `layer` over a stream; returns its outputs (same packing). With `past_entries` the layer
        attends over those KV entries (the float model's) instead of its own."""
        outputs = []
        position = 0
        for group_index, group in enumerate(self.groups):
            group_out = []
            for batch_index, rows in enumerate(_batches_of(group, self.batch_size)):
                batch = rows.stop - rows.start
                window = _window(self.config, batch, self.model.dtype, self.device)
                chunk_out = []
                for chunk_index, chunk in enumerate(group.chunks):
                    hidden = stream[group_index][chunk_index][batch_index]
                    window.make_room(self.config.context_length - chunk.ar_length)
                    past_k, past_v = window.past(chunk.ar_length)
                    try:
                        out, key, value = layer(hidden, chunk.cos, chunk.sin, chunk.mask, past_k[0], past_v[0])
                    except StopForward:
                        out = key = value = None
                    if past_entries is not None:
                        key, value = past_entries[position]
                    elif keep_entries is not None:
                        keep_entries.append((key, value))
                    position += 1
                    if key is not None:
                        window.append([key], [value], chunk.count)
                    else:
                        window.num_valid += chunk.count
                        window.num_seen += chunk.count
                    chunk_out.append(out)
                group_out.append(chunk_out)
            outputs.append([[group_out[b][c] for b in range(len(group_out))] for c in range(len(group.chunks))])
        return None if stop else outputs

    def _pack(self, outputs):
        """[group × chunk][batch] flat list from the embedding → stream[group][chunk][batch]."""
        packed, position = [], 0
        for group in self.groups:
            packed.append(outputs[position : position + len(group.chunks)])
            position += len(group.chunks)
        return packed

    def _each_batch(self, stream):
        for group in stream:
            for chunk in group:
                yield from chunk

    # -- helpers -----------------------------------------------------------------------------------
    def _move_to(self, device: torch.device) -> None:
        """Makes `device` the execution device: the streams and the chunks' inputs follow (once per switch)."""
        if device == self.device:
            return
        with self._timed("transfer"):
            for chunk in (c for g in self.groups for c in g.chunks):
                chunk.mask, chunk.cos, chunk.sin = (t.to(device) for t in (chunk.mask, chunk.cos, chunk.sin))
            self.activations = {
                name: [[[t.to(device) for t in chunk] for chunk in group] for group in stream]
                for name, stream in self.activations.items()
            }
            self.device = device

    @contextlib.contextmanager
    def _on_device(self, module: nn.Module):
        with executing_on(module, self.device, self.home, lambda: self._timed("transfer")):
            yield

    @contextlib.contextmanager
    def _timed(self, phase: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.report.add(phase, time.perf_counter() - started)

    def _seconds_so_far(self) -> float:
        return sum(v for k, v in self.report.seconds.items())


@contextlib.contextmanager
def executing_on(module: nn.Module, device: torch.device, home: torch.device, timed=contextlib.nullcontext):
    """`module` on `device` inside; back `home` after, where parameters that nothing wrote into on `device`
    get their own home tensors back instead of a copy (no second host copy of a weight another model
    shares, and no device-to-host copy of weights that did not change). Writes are seen through the
    parameters' version counters, so through the parameter or its views, not through `.data`.
    `timed()` wraps the moves."""
    if device == home:
        yield
        return
    with timed():
        homes = {name: (param, param.detach()) for name, param in module.named_parameters()}
        module.to(device)
        versions = {name: param._version for name, param in module.named_parameters()}  # in-place writes bump these
    try:
        yield
    finally:
        with timed():
            for name, param in list(module.named_parameters()):
                original, home_tensor = homes[name]
                if param._version != versions[name] or param.device == home:
                    continue
                if param is original:  # moved by swapping its data
                    param.data = home_tensor
                else:  # moved into a new Parameter: the original still holds the home tensor
                    owner, _, leaf = name.rpartition(".")
                    setattr(module.get_submodule(owner), leaf, original)
            module.to(home)  # what changed (quantizer ranges) and buffers


def check_layerwise_options(recipe, rounding: str, use_seq_mse: bool) -> None:
    if rounding != "nearest" or recipe.option("weight_range", "minmax") != "minmax":
        raise EdgeLlamaError(
            f"recipe {recipe.name}: layer-wise calibration takes min-max weight ranges with nearest rounding "
            f"(or Sequential MSE); weight_rounding={rounding!r}, weight_range={recipe.option('weight_range', 'minmax')!r} "
            "need the all-in-memory path (layerwise=False)."
        )

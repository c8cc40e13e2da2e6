"""What `w4a16` (with and without Sequential MSE) costs on big models: time per phase, GPU memory, host RSS.

    # on one GPU (H100/H200): Llama-3.2-3B and Llama-3-8B shapes, random weights, ≈80k calibration tokens
    python benchmarks/gpu_quantize.py --model llama-3.2-3b --seq-mse both
    python benchmarks/gpu_quantize.py --model llama-3-8b --seq-mse both
    # on this CPU machine: SmolLM2-135M (its real weights), a small calibration set
    .venv/bin/python benchmarks/gpu_quantize.py --model smollm2-135m --device cpu --samples 4 --sequence-length 256

Shapes come from `configs/architectures/<model>.json` (the real configs' architecture fields); the
weights are random, drawn on the GPU and kept on the host: shapes decide the cost, not values. The
calibration tokens are random ids too. Quantization runs layer-wise (`layerwise=True`): one decoder
layer and its calibration activations on the GPU at a time.

Phases: build (random model), build_sim (aimet's simulation, from a one-layer template), embedding,
seq_mse, calibration, head (final norm + lm_head), transfer (host ↔ GPU), encodings (collect and write
`model.encodings`), save (`model.data`, streamed tensor by tensor). `--export-graphs` runs the whole
`save_pretrained` instead (both ONNX graphs, `model.data`, `model.encodings`, checksums), with each of
its steps (trace, optimize, model.data, graph files, checksums) timed. Host RSS is sampled every 20 ms;
the peak during the save is compared with the float weights' size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_results  # noqa: E402

from edge_llama import EdgeLlamaConfig, EdgeLlamaForCausalLM  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
ARCHITECTURES = ROOT / "configs" / "architectures"


class RssSampler:
    """Peak resident set size of this process: overall, and over any number of open (nested) windows."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0
        self._windows: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self._page

    def _loop(self) -> None:
        while not self._stop.is_set():
            value = self.rss()
            self.peak = max(self.peak, value)
            with self._lock:
                for window in self._windows:
                    window["peak"] = max(window["peak"], value)
            time.sleep(self.interval)

    @contextlib.contextmanager
    def window(self):
        """Yields {"start", "peak", "end"} RSS bytes of the code inside (peak sampled, start/end read)."""
        record = {"start": self.rss()}
        record["peak"] = record["start"]
        with self._lock:
            self._windows.append(record)
        try:
            yield record
        finally:
            record["end"] = self.rss()
            with self._lock:
                self._windows.remove(record)
            record["peak"] = max(record["peak"], record["end"])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def probes(sampler: RssSampler, targets: dict[str, tuple[object, str]]):
    """Times and RSS-samples every call of `targets` (label → (owner, attribute)) while inside.

    Yields {label: [{"s", "rss_start", "rss_peak"}, …]}, one entry per call.
    """
    calls: dict[str, list[dict]] = {label: [] for label in targets}
    saved = []
    for label, (owner, attribute) in targets.items():
        original = getattr(owner, attribute)

        def wrapped(*args, _original=original, _label=label, **kwargs):
            started = time.perf_counter()
            with sampler.window() as rss:
                result = _original(*args, **kwargs)
            calls[_label].append({"s": time.perf_counter() - started, "rss_start": rss["start"], "rss_peak": rss["peak"]})
            return result

        saved.append((owner, attribute, original))
        setattr(owner, attribute, wrapped)
    try:
        yield calls
    finally:
        for owner, attribute, original in reversed(saved):
            setattr(owner, attribute, original)


def build_model(name: str, device: torch.device, context_length: int, layers: int | None) -> EdgeLlamaForCausalLM:
    """The edge model in w4a16's layout: random weights drawn on `device`, held on the host."""
    from transformers import LlamaConfig

    if name == "smollm2-135m":
        model = EdgeLlamaForCausalLM.from_pretrained(
            "DEFAULT", context_length=context_length, use_split_head_attention=True, use_conv_projections=True,
            tie_word_embeddings=False,
        )
        if model.lm_head.weight is model.model.embed_tokens.weight:  # w4a16 unties lm_head (its own 8-bit grid)
            model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.detach().clone())
        return model.eval()
    fields = json.loads((ARCHITECTURES / f"{name}.json").read_text())
    fields.pop("_comment", None)
    if layers:
        fields["num_hidden_layers"] = layers
    fields["tie_word_embeddings"] = False  # w4a16 gives lm_head its own 8-bit grid: untied, as quantize() does
    config = EdgeLlamaConfig.from_llama_config(
        LlamaConfig(**fields), context_length=context_length, ar_lengths=[128, 1],
        use_split_head_attention=True, use_conv_projections=True,
    )
    with torch.device("meta"):
        model = EdgeLlamaForCausalLM(config)
    model.to_empty(device="cpu")
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if param_name.endswith("layernorm.weight") or param_name.endswith("norm.weight"):
                param.fill_(1.0)
                continue
            fan_in = param.shape[1] if param.dim() > 1 else 1
            scale = 1.0 if "embed_tokens" in param_name else fan_in**-0.5
            param.copy_(torch.randn(param.shape, generator=generator, device=device).mul_(scale))
    return model.eval()


def run_once(args, use_seq_mse: bool, sampler: RssSampler) -> dict:
    from edge_llama.quantization.aimet_engine import AimetEngine
    from edge_llama.quantization.quantize import QuantizationState
    from edge_llama.quantization.recipe import load_recipe
    from edge_llama.serialization.model_data import write_model_data
    from edge_llama.export.onnx_graphs import canonical_parameters

    device = torch.device(args.device)
    phases: dict[str, float] = {}
    rss: dict[str, int] = {}
    rss_start: dict[str, int] = {}

    def timed(phase: str, action):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        with sampler.window() as window:
            result = action()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        phases[phase] = time.perf_counter() - started
        rss[phase], rss_start[phase] = window["peak"], window["start"]
        print(f"  {phase}: {phases[phase]:.1f} s, peak RSS {window['peak'] / 2**30:.2f} GiB "
              f"(from {window['start'] / 2**30:.2f})", flush=True)
        return result

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = timed("build", lambda: build_model(args.model, device, args.context_length, args.layers))
    float_bytes = sum(p.numel() * p.element_size() for p in canonical_parameters(model)[0].values())
    recipe = load_recipe("w4a16")
    model.quantization = QuantizationState(recipe, use_seq_mse=use_seq_mse)
    generator = torch.Generator().manual_seed(1)
    batches = list(torch.randint(0, model.config.vocab_size, (args.samples, 1, args.sequence_length), generator=generator))
    engine = AimetEngine()
    options = dict(layerwise=True, device=args.device, calibration_batch_size=args.batch_size, progress=True)
    if args.progress_dir:
        options["progress_dir"] = Path(args.progress_dir) / f"{args.model}-seqmse{int(use_seq_mse)}"
    timed("quantize", lambda: engine.quantize(model, recipe, batches, use_seq_mse=use_seq_mse, **options))
    report = model.quantization.layerwise_report
    del batches
    result = {"seq_mse": use_seq_mse}
    with tempfile.TemporaryDirectory(dir=args.save_dir) as folder:
        folder = Path(folder)
        if args.export_graphs:
            result["export"] = export_graphs(model, folder / "saved", sampler, timed, float_bytes)
            data_bytes = (folder / "saved" / "model.data").stat().st_size
            encodings = engine.encodings(model)
        else:
            encodings = timed("encodings", lambda: engine.encodings(model))
            timed("encodings_write", lambda: encodings.write(folder / "model.encodings"))
            plain = engine.float_model(model)
            canonical, _ = canonical_parameters(plain)
            timed("save", lambda: write_model_data(folder / "model.data", canonical.items()))
            data_bytes = (folder / "model.data").stat().st_size
            result["save_peak_rss_over_float_weights"] = rss["save"] / float_bytes
            del plain, canonical
    result.update({
        "phases_s": phases,
        "quantize_phases_s": report.seconds,
        "layer_devices": report.layer_devices,
        "total_s": sum(phases.values()),
        "peak_rss_bytes": rss,
        "phase_start_rss_bytes": rss_start,
        "float_weight_bytes": float_bytes,
        "model_data_bytes": data_bytes,
        "param_encodings": len(encodings.params),
        "activation_encodings": len(encodings.activations),
    })
    if device.type == "cuda":
        result["peak_gpu_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        result["peak_gpu_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
    del model
    return result


def export_graphs(model, folder: Path, sampler: RssSampler, timed, float_bytes: int) -> dict:
    """`save_pretrained` of the quantized model (graphs + model.data + model.encodings), each step timed."""
    import onnx_ir

    from edge_llama.export import onnx_graphs
    from edge_llama.serialization import quantized_folder

    steps = {
        "trace": (onnx_graphs, "trace_onnx"),  # dynamo over two layers, then the layer repeat
        "optimize": (onnx_graphs, "_optimize"),
        "model_data": (onnx_graphs, "write_model_data"),
        "graph_files": (onnx_ir, "save"),
        "checksums": (quantized_folder, "file_sha256"),
    }
    with probes(sampler, steps) as calls, sampler.window() as window:
        timed("save_pretrained", lambda: model.save_pretrained(folder))
    start, peak = window["start"], window["peak"]
    return {
        "steps": calls,
        "graph_bytes": {p.name: p.stat().st_size for p in sorted(folder.glob("*.onnx"))},
        "rss_before_bytes": start,
        "peak_rss_bytes": peak,
        "peak_rss_over_float_weights": peak / float_bytes,
        "rss_growth_over_float_weights": (peak - start) / float_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["llama-3.2-3b", "llama-3-8b", "smollm2-135m"], default="llama-3.2-3b")
    parser.add_argument("--seq-mse", choices=["off", "on", "both"], default="both")
    parser.add_argument("--samples", type=int, default=160, help="calibration sequences (160 × 512 = 81,920 tokens)")
    parser.add_argument("--sequence-length", type=int, default=512)
    parser.add_argument("--context-length", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=32, help="sequences that go through a layer together")
    parser.add_argument("--layers", type=int, default=None, help="fewer decoder layers (a quick trial)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--save-dir", default=None, help="where model.data is written (a temporary folder inside)")
    parser.add_argument("--progress-dir", default=None, help="write per-layer progress there (measures its cost)")
    parser.add_argument("--export-graphs", action="store_true", help="also export the ONNX graphs")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    args.output = args.output or RESULTS / f"gpu_quantize_{args.model}{'_' + args.device if args.device == 'cpu' else ''}.json"

    sampler = RssSampler()
    runs = []
    for use_seq_mse in {"off": [False], "on": [True], "both": [False, True]}[args.seq_mse]:
        print(f"{args.model} w4a16 seq_mse={use_seq_mse}", flush=True)
        runs.append(run_once(args, use_seq_mse, sampler))
        print(f"  total {runs[-1]['total_s']:.1f} s", flush=True)
        payload = {  # written after every run, so a later run that is cut short keeps the earlier ones
            "model": args.model,
            "recipe": "w4a16",
            "calibration_tokens": args.samples * args.sequence_length,
            "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
            "cuda": torch.version.cuda,
            "aimet_torch": _version("aimet-torch"),
            "peak_rss_bytes": sampler.peak,
            "runs": runs,
        }
        write_results(args, payload)
    sampler.stop()


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()

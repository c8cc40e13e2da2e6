"""CPU speed of the exported default model against transformers and llama.cpp, side by side in one run.

    .venv/bin/python benchmarks/cpu_speed.py [--threads 2] [--repeats 5] [--variants pte-8da4w eager-fp32 ...]

For every variant, in a fresh subprocess (so peak RSS is its own): decode tokens/s (`--new-tokens`
greedy tokens after a `--prompt-tokens` prompt), prompt tokens/s (a `--long-prompt-tokens` prompt),
time to first token of the short prompt, peak RSS and file size. Medians over `--repeats`. Also
measures this machine's memory read bandwidth with the same threads and prints each variant's share
of the decode roofline: bandwidth / bytes read per generated token (the weights every token
multiplies with, plus the KV cache it attends over).

Variants: `pte-8da4w` (our ExecuTorch XNNPACK program), `onnx-int4` (our ONNX Runtime MatMulNBits
model, when that target is installed), `eager-fp32` (transformers LlamaForCausalLM), `llama.cpp-Q4_0`
and `llama.cpp-Q8_0` (llama-cpp-python, the `bench` extra; the GGUFs are requantized from the
package's Q4_1 file). Exports are made once into `$EDGE_LLAMA_CACHE/bench`.

Writes benchmarks/results/cpu_speed.json.

llama-cpp-python builds llama.cpp for the build machine's CPU; on these machines (Sapphire Rapids
under a VM) its AMX kernels die with SIGILL (`tilezero`), so build it without them:
`CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON
-DGGML_AVX512_VNNI=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF" pip install 'edge-llama[bench]'`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TEXT = "The lighthouse keeper wrote down the weather every morning, and how many boats went out. "
VARIANTS = ("pte-8da4w", "onnx-int4", "eager-fp32", "llama.cpp-Q4_0", "llama.cpp-Q8_0")
CONTEXT_LENGTH = 1024


def bench_dir() -> Path:
    from edge_llama.checkpoints import cache_dir

    folder = cache_dir() / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- the variants: each loads, then runs prefill(ids) -> next token and step(token) -> next token --------------


class EdgeExport:
    """One of our exported folders, driven by the library's own runner (what `generate()` uses)."""

    def __init__(self, recipe: str, target: str, options: dict):
        from edge_llama import EdgeLlamaForCausalLM

        folder = bench_dir() / f"smollm2-{recipe}-{target}-cl{CONTEXT_LENGTH}"
        if not folder.exists():
            model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT", context_length=CONTEXT_LENGTH)
            model.quantize(recipe).export(target, folder, **options)
        self.model = EdgeLlamaForCausalLM.from_pretrained(folder)
        self.runner = self.model.runner
        self.files = [path for path in folder.iterdir() if path.suffix in (".pte", ".onnx", ".data")]
        self.window = None

    def prefill(self, ids: list[int]) -> int:
        import torch

        self.window = self.runner.new_window()
        return int(self.runner.process(torch.tensor(ids), self.window)[-1].argmax())

    def step(self, token: int) -> int:
        import torch

        return int(self.runner.process(torch.tensor([token]), self.window)[-1].argmax())


class Eager:
    def __init__(self):
        import torch
        from transformers import LlamaForCausalLM

        from edge_llama import resolve_checkpoint

        folder = Path(resolve_checkpoint("DEFAULT"))
        self.model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
        self.files = list(folder.glob("*.safetensors"))
        self.past = None

    def prefill(self, ids: list[int]) -> int:
        import torch

        with torch.no_grad():
            out = self.model(torch.tensor([ids]), use_cache=True)
        self.past = out.past_key_values
        return int(out.logits[0, -1].argmax())

    def step(self, token: int) -> int:
        import torch

        with torch.no_grad():
            out = self.model(torch.tensor([[token]]), past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        return int(out.logits[0, -1].argmax())


class LlamaCpp:
    def __init__(self, quant: str, threads: int):
        import llama_cpp

        gguf = _gguf(quant)
        self.llm = llama_cpp.Llama(str(gguf), n_ctx=CONTEXT_LENGTH, n_threads=threads, n_threads_batch=threads,
                                   n_batch=512, verbose=False)
        self.files = [gguf]

    def prefill(self, ids: list[int]) -> int:
        self.llm.reset()
        self.llm.eval(ids)
        return int(self.llm.scores[self.llm.n_tokens - 1].argmax())

    def step(self, token: int) -> int:
        self.llm.eval([token])
        return int(self.llm.scores[self.llm.n_tokens - 1].argmax())


def _gguf(quant: str) -> Path:
    """The package's Q4_1 SmolLM2 GGUF requantized to `quant` by llama.cpp's own quantizer (once)."""
    import llama_cpp

    from edge_llama.presets import find_preset

    target = bench_dir() / f"SmolLM2-135M-Instruct.{quant}.gguf"
    if not target.exists():
        source = _package_gguf(find_preset("DEFAULT"))
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
        params.allow_requantize = True
        partial = target.with_suffix(".partial")
        if llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), params) != 0:
            raise RuntimeError(f"llama.cpp could not quantize {source} to {quant}")
        partial.rename(target)
    return target


def _package_gguf(preset) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(preset.source["module"])
    return Path(next(iter(spec.submodule_search_locations))) / preset.source["file"]


def load_variant(name: str, threads: int):
    if name == "pte-8da4w":
        return EdgeExport("8da4w", "executorch", {"max_seq_len": 128})
    if name == "onnx-int4":
        return EdgeExport("w4-awq", "onnx-int4", {})
    if name == "eager-fp32":
        return Eager()
    if name.startswith("llama.cpp-"):
        return LlamaCpp(name.removeprefix("llama.cpp-"), threads)
    raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")


def measure(args: argparse.Namespace) -> dict:
    """Runs in the variant's own process; returns its medians."""
    import torch

    torch.set_num_threads(args.threads)
    from edge_llama import load_tokenizer

    tokenizer = load_tokenizer("DEFAULT")
    ids = tokenizer(TEXT * (args.long_prompt_tokens // 10 + 1)).input_ids
    short, long = ids[: args.prompt_tokens], ids[: args.long_prompt_tokens]

    rss_before = current_rss_mib()
    started = time.perf_counter()
    variant = load_variant(args.run_variant, args.threads)
    load_seconds = time.perf_counter() - started
    variant.prefill(short[:8]); variant.step(0)  # warm-up
    ttft, decode, prompt, tokens = [], [], [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        token = variant.prefill(short)
        ttft.append(time.perf_counter() - started)
        generated = [token]
        started = time.perf_counter()
        for _ in range(args.new_tokens - 1):
            generated.append(variant.step(generated[-1]))
        decode.append((args.new_tokens - 1) / (time.perf_counter() - started))
        started = time.perf_counter()
        variant.prefill(long)
        prompt.append(len(long) / (time.perf_counter() - started))
        tokens = generated
    return {
        "variant": args.run_variant,
        "decode_tokens_per_s": statistics.median(decode),
        "prompt_tokens_per_s": statistics.median(prompt),
        "ttft_s": statistics.median(ttft),
        "runs": {"decode_tokens_per_s": decode, "prompt_tokens_per_s": prompt, "ttft_s": ttft},
        "load_s": load_seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model_rss_mib": current_rss_mib() - rss_before,  # what loading and running added to the process
        "file_mb": sum(path.stat().st_size for path in variant.files) / 1e6,
        "greedy_tokens": tokens[:16],
    }


def current_rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def read_bandwidth(threads: int, gib: float = 1.0, repeats: int = 31) -> float:
    """GB/s of summing a buffer far larger than the caches, with `threads` threads (median).

    Another job on the machine halves it (33.9 GB/s during an export, 70.9 quiet, same machine):
    `main` measures before and after the variants and divides by the larger, so a busy moment cannot
    flatter the roofline share."""
    import torch

    torch.set_num_threads(threads)
    buffer = torch.ones(int(gib * (1 << 30)) // 4)
    buffer.sum()
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        buffer.sum()
        runs.append(buffer.numel() * 4 / (time.perf_counter() - started) / 1e9)
    return statistics.median(runs)


def bytes_per_token(name: str, position: int) -> float:
    """Bytes a variant reads per generated token at `position`: the weights it multiplies with (an
    embedding that is only gathered from does not count, unless it doubles as lm_head) plus the KV
    cache it attends over."""
    from edge_llama import EdgeLlamaConfig, resolve_checkpoint

    config = EdgeLlamaConfig.from_pretrained(resolve_checkpoint("DEFAULT"))
    hidden, vocab = config.hidden_size, config.vocab_size
    per_layer = (hidden * config.head_dim * (config.num_attention_heads * 2 + config.num_key_value_heads * 2)
                 + 3 * hidden * config.intermediate_size)
    decoder = per_layer * config.num_hidden_layers
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * position
    if name == "pte-8da4w":  # int4 + a bfloat16 scale per 32 (XNNPACK's qb4w); lm_head quantized too; fp32 cache
        return (decoder + vocab * hidden) * (0.5 + 2 / 32) + kv * 4
    if name == "onnx-int4":  # uint4 + fp32 scale + 4-bit zero point per 128; float lm_head
        return decoder * (0.5 + 4.5 / 128) + vocab * hidden * 4 + kv * 4
    if name == "eager-fp32":  # tied: the embedding is lm_head
        return (decoder + vocab * hidden) * 4 + kv * 4
    bits = {"llama.cpp-Q4_0": 4.5, "llama.cpp-Q8_0": 8.5}[name]  # per weight, block scales included; f16 cache
    return (decoder + vocab * hidden) * bits / 8 + kv * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="which variants to run")
    parser.add_argument("--threads", type=int, default=2, help="threads of every runtime")
    parser.add_argument("--repeats", type=int, default=5, help="runs per variant; medians are reported")
    parser.add_argument("--prompt-tokens", type=int, default=64, help="prompt before the timed decode")
    parser.add_argument("--new-tokens", type=int, default=128, help="greedy tokens generated and timed")
    parser.add_argument("--long-prompt-tokens", type=int, default=256, help="prompt timed for prompt tokens/s")
    parser.add_argument("--output", type=Path, default=RESULTS / "cpu_speed.json")
    parser.add_argument("--run-variant", help=argparse.SUPPRESS)  # internal: measure one variant here
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.run_variant:
        print(json.dumps(measure(args)))
        return

    from _results import write_results

    bandwidth_before = read_bandwidth(args.threads)
    print(f"memory read bandwidth, {args.threads} threads: {bandwidth_before:.1f} GB/s", flush=True)
    rows = []
    for name in args.variants:
        command = [sys.executable, __file__, "--run-variant", name, "--threads", str(args.threads),
                   "--repeats", str(args.repeats), "--prompt-tokens", str(args.prompt_tokens),
                   "--new-tokens", str(args.new_tokens), "--long-prompt-tokens", str(args.long_prompt_tokens)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
            print(f"{name:<16} skipped: {reason}", flush=True)
            rows.append({"variant": name, "skipped": reason})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{name:<16} decode {rows[-1]['decode_tokens_per_s']:7.1f} tok/s  prompt {rows[-1]['prompt_tokens_per_s']:7.1f} tok/s  "
              f"TTFT {rows[-1]['ttft_s'] * 1000:6.1f} ms  RSS {rows[-1]['peak_rss_mib']:5.0f} MiB "
              f"(model {rows[-1]['model_rss_mib']:4.0f})  file {rows[-1]['file_mb']:6.1f} MB", flush=True)
    bandwidth_after = read_bandwidth(args.threads)
    bandwidth = max(bandwidth_before, bandwidth_after)
    print(f"memory read bandwidth after the variants: {bandwidth_after:.1f} GB/s; the roofline uses {bandwidth:.1f}")
    mean_position = args.prompt_tokens + args.new_tokens / 2
    for row in rows:
        if "skipped" in row:
            continue
        row["bytes_per_token_mb"] = bytes_per_token(row["variant"], int(mean_position)) / 1e6
        row["roofline_tokens_per_s"] = bandwidth * 1e9 / (row["bytes_per_token_mb"] * 1e6)
        row["roofline_share"] = row["decode_tokens_per_s"] / row["roofline_tokens_per_s"]
        print(f"{row['variant']:<16} reads {row['bytes_per_token_mb']:6.1f} MB per token: roofline "
              f"{row['roofline_tokens_per_s']:5.0f} tok/s, decode at {100 * row['roofline_share']:4.1f} % of it")
    write_results(args, {"read_bandwidth_gb_s": bandwidth, "read_bandwidth_runs_gb_s": [bandwidth_before, bandwidth_after],
                         "context_length": CONTEXT_LENGTH, "rows": rows, "versions_extra": _versions()})


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("executorch", "torchao", "onnxruntime", "llama_cpp_python"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    main()

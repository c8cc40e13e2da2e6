"""Where the QDQ graph (what QNN compiles) departs from the AIMET host simulation, layer by layer.

    .venv/bin/python benchmarks/qdq_layer_agreement.py [--folder smollm2-w4a16] [--tokens 128]

Without `--folder`, quantizes SmolLM2-135M (w4a16, one calibration sample of 128 tokens, CL 256) and
saves it to a temporary folder. Runs one AR-128 call of held-apart prose through the saved graph in
QDQ form on onnxruntime's CPU EP and through the host simulation, and compares the residual stream
and the RMSNorm outputs of every layer (SQNR, and how each is stored: fp16, or an integer grid's step), then
the logits' top-1 agreement. Prints a table and writes benchmarks/results/qdq_layer_agreement.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from _results import write_results

from edge_llama import EdgeLlamaForCausalLM, load_tokenizer
from edge_llama.data import load_corpus
from edge_llama.export.onnx_graphs import graph_file_name, io_names
from edge_llama.export.qdq import to_qdq
from edge_llama.quantization.encodings import Encodings

RESULTS = Path(__file__).parent / "results"
MODULES = ("input_layernorm", "attn_residual", "post_attention_layernorm", "mlp_residual")


def sqnr_db(actual: np.ndarray, expected: np.ndarray) -> float:
    noise = float(((actual - expected) ** 2).mean())
    return float("inf") if noise == 0 else 10 * float(np.log10((expected**2).mean() / noise))


def _grid(encoding) -> str:
    """How a tensor is stored: `fp16`, or its integer grid's step."""
    if encoding is None:
        return "float32"
    return f"fp{encoding.bw}" if encoding.is_float else f"int{encoding.bw} step {encoding.scale[0]:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="a saved w4a16/w8a16 checkpoint folder (default: quantize SmolLM2)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--output", type=Path, default=RESULTS / "qdq_layer_agreement.json")
    args = parser.parse_args()

    tokenizer = load_tokenizer("DEFAULT")
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder
        if folder is None:
            folder = Path(scratch) / "w4a16"
            float_model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT", context_length=256)
            float_model.quantize("w4a16", num_samples=1, sequence_length=128).save_pretrained(folder)
        model = EdgeLlamaForCausalLM.from_pretrained(folder)
        config, encodings = model.config, Encodings.read(folder / "model.encodings")
        ar = max(config.ar_lengths)
        qdq = to_qdq(folder / graph_file_name(ar, config.context_length), encodings, Path(scratch) / "qdq.onnx")

        text = load_corpus(None, "evaluation").joined("\n\n")
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids[0, : min(args.tokens, ar)]
        runner = model.runner
        inputs = runner.build_call(ids, runner.new_window(), ar).as_args()

        wanted = [f"model.layers.{layer}.{module}" for layer in range(config.num_hidden_layers) for module in MODULES]
        captured: dict[str, np.ndarray] = {}
        hooks = [module.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach().numpy().copy()))
                 for name, module in model.named_modules() if name in wanted]
        with torch.no_grad():
            host_logits = model.graph_forward(*inputs)[0][0].numpy()
        for hook in hooks:
            hook.remove()

        graph = onnx.load(str(qdq), load_external_data=False)
        outputs = [f"{name}:output0" for name in wanted]
        graph.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in outputs)
        probed = Path(scratch) / "qdq_probed.onnx"
        onnx.save(graph, str(probed))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written
        session = ort.InferenceSession(str(probed), options, providers=["CPUExecutionProvider"])
        names, _ = io_names(config.num_hidden_layers)
        input_ids, mask, cos, sin, keys, values = inputs
        feeds = dict(zip(names, [t.numpy() for t in (input_ids, mask, cos, sin, *keys, *values)]))
        results = session.run(["logits", *outputs], feeds)

    rows = []
    for name, value in zip(wanted, results[1:]):
        encoding = encodings.activations.get(f"{name}:output0")
        host = captured[name]
        rows.append({
            "tensor": name, "sqnr_db": round(sqnr_db(value.reshape(host.shape), host), 1),
            "max_abs": round(float(np.abs(host).max()), 2),
            "grid": _grid(encoding),
        })
        print(f"{name:<48} SQNR {rows[-1]['sqnr_db']:6.1f} dB   max|x| {rows[-1]['max_abs']:10.1f}   grid {rows[-1]['grid']}")
    qdq_logits = results[0][0]
    agreement = float((qdq_logits.argmax(-1) == host_logits.argmax(-1))[-len(ids):].mean())
    print(f"logits: top-1 agreement {agreement:.3f} over {len(ids)} positions, SQNR {sqnr_db(qdq_logits, host_logits):.1f} dB")
    write_results(args, {"folder": str(args.folder) if args.folder else "SmolLM2-135M w4a16 (1 × 128 calibration tokens), CL 256",
                         "positions": len(ids), "top1_agreement": agreement,
                         "logits_sqnr_db": round(sqnr_db(qdq_logits, host_logits), 1), "rows": rows})


if __name__ == "__main__":
    main()

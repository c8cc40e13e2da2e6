"""Which quantized op does HTP compute differently? Every activation of the QDQ graph, the HTP simulator
against onnxruntime's CPU EP, in graph order.

    .venv/bin/python benchmarks/htp_op_probe.py --layers 2          # a few minutes on 2 cores

Cuts SmolLM2-135M to its first `--layers` decoder layers (CL 256, AR 128), quantizes it with
`--recipe` (one calibration sample of 128 tokens), writes the AR-128 graph in QDQ form and makes every
quantized activation (each `DequantizeLinear` that reads a `QuantizeLinear`) a graph output. The same
graph then runs one call of held-apart prose on the CPU EP (the host's arithmetic: it agrees with the
AIMET simulation up to float rounding, see qdq_layer_agreement.py) and on the HTP simulator for
`--device` with CPU fallback off. For each activation: the share of elements whose integer code
differs, the largest difference in steps of its grid, and the SQNR of HTP against the CPU. An op
that HTP computes with less precision shows up as the first tensor whose codes move by more than a
step or two while its inputs still agree. Writes benchmarks/results/htp_op_probe.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from _results import write_results
from _smollm2 import first_layers, held_apart_ids

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.evaluation.agreement import sqnr_db
from edge_llama.export.genie import GENIE_INPUT_NAMES, to_genie_io
from edge_llama.export.onnx_graphs import graph_file_name, io_names
from edge_llama.export.qdq import to_qdq
from edge_llama.export.qnn import qnn_session_options
from edge_llama.generation.qnn_backend import _from_graph, _to_graph
from edge_llama.presets import find_device
from edge_llama.quantization.encodings import Encodings

RESULTS = Path(__file__).parent / "results"
# Ops that only move codes around; QNN refuses them with a second consumer on their output.
MOVES_DATA = {"Squeeze", "Unsqueeze", "Transpose", "Reshape", "Slice", "Split", "Concat", "Gather", "Flatten", "Expand"}


def quantized_activations(graph: onnx.ModelProto) -> list[tuple[str, str, float]]:
    """(tensor, producing op of the quantized value, step) of every Q → DQ pair on an activation, in graph order."""
    producers = {output: node for node in graph.graph.node for output in node.output}
    initializers = {tensor.name: tensor for tensor in graph.graph.initializer}
    outputs = {value.name for value in graph.graph.output}  # already come out as integer codes
    found = []
    for node in graph.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] in initializers or node.output[0] in outputs:
            continue
        quantize = producers.get(node.input[0])
        if quantize is None or quantize.op_type != "QuantizeLinear":
            continue
        source = producers.get(quantize.input[0])
        if source is None or source.op_type in MOVES_DATA:  # an input goes in as codes; data moves keep them
            continue
        scale = initializers.get(node.input[1])
        if scale is None or scale.dims:  # per-tensor activations only
            continue
        step = float(onnx.numpy_helper.to_array(scale))
        found.append((node.output[0], source.op_type, step))
    return found


def add_probe_outputs(graph: onnx.ModelProto, probes: list[tuple[str, str, float]]) -> None:
    """A second `DequantizeLinear` per probed activation, as graph output `probe_<i>` (its own node, so
    `to_genie_io` can turn it into the integer codes without touching the graph's own consumers)."""
    dequantizers = {node.output[0]: node for node in graph.graph.node if node.op_type == "DequantizeLinear"}
    # QNN allocates every graph output up front: each needs its type and shape, not just a name.
    shapes = {info.name: info for info in onnx.shape_inference.infer_shapes(graph).graph.value_info}
    for i, (name, _, _) in enumerate(probes):
        node = dequantizers[name]
        graph.graph.node.append(onnx.helper.make_node("DequantizeLinear", list(node.input), [f"probe_{i}"], name=f"probe_{i}"))
        output = onnx.ValueInfoProto()
        output.CopyFrom(shapes[name])
        output.name = f"probe_{i}"
        graph.graph.output.append(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2, help="decoder layers kept (SmolLM2 has 30)")
    parser.add_argument("--recipe", default="w4a16")
    parser.add_argument("--device", default="Snapdragon 8 Gen 3")
    parser.add_argument("--output", type=Path, default=RESULTS / "htp_op_probe.json")
    args = parser.parse_args()

    quantized = first_layers(args.layers).quantize(args.recipe, num_samples=1, sequence_length=128, progress=False)
    ids = held_apart_ids(128)[0]

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "model"
        quantized.save_pretrained(folder)
        saved = EdgeLlamaForCausalLM.from_pretrained(folder)
        config, encodings = saved.config, Encodings.read(folder / "model.encodings")
        qdq = to_qdq(folder / graph_file_name(128, config.context_length), encodings, Path(scratch) / "qdq.onnx")
        graph = onnx.load(str(qdq), load_external_data=False)
        probes = quantized_activations(graph)
        add_probe_outputs(graph, probes)
        probed = Path(scratch) / "qdq_probed.onnx"
        onnx.save(graph, str(probed))
        # Genie's integer I/O, as the export compiles it: every probe comes out as its integer codes.
        genie_graph = Path(scratch) / "genie_io.onnx"
        io = {name: {"quantization": q.to_dict()} for name, q in to_genie_io(probed, genie_graph).items()}

        runner = saved.runner
        call = runner.build_call(ids, runner.new_window(), 128).as_args()
        input_ids, mask, cos, sin, keys, values = call
        names, _ = io_names(config.num_hidden_layers)
        arrays = dict(zip(names, [t.numpy() for t in (input_ids, mask, cos, sin, *keys, *values)]))
        arrays.update({genie: arrays[name] for name, genie in GENIE_INPUT_NAMES.items()})
        cpu_options = ort.SessionOptions()
        cpu_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sessions = {
            "cpu": ort.InferenceSession(str(genie_graph), cpu_options, providers=["CPUExecutionProvider"]),
            "htp": ort.InferenceSession(str(genie_graph), sess_options=qnn_session_options(find_device(args.device))),
        }
        wanted = ["logits", *(f"probe_{i}" for i in range(len(probes)))]
        results = {}
        for key, session in sessions.items():
            feeds = {v.name: _to_graph(arrays[v.name], v.type, io.get(v.name)) for v in session.get_inputs()}
            results[key] = session.run(wanted, feeds)
        on_cpu, on_htp = results["cpu"], results["htp"]

    rows = []
    print(f"SmolLM2-135M, first {args.layers} layers, {args.recipe}, {args.device}: HTP simulator vs CPU EP, same QDQ graph")
    print(f"{'activation':<64} {'op':<22} {'codes differ':>12} {'max steps':>9} {'SQNR dB':>8}")
    for i, ((name, op, step), cpu, npu) in enumerate(zip(probes, on_cpu[1:], on_htp[1:])):
        steps = np.abs(npu.astype(np.int64) - cpu.astype(np.int64))
        sqnr = sqnr_db(_from_graph(cpu, io[f"probe_{i}"]), _from_graph(npu, io[f"probe_{i}"]))
        row = {
            "activation": name, "op": op, "step": step,
            "codes_differ": float((steps > 0).mean()),
            "max_steps": int(steps.max()),
            "sqnr_db": round(sqnr, 1) if np.isfinite(sqnr) else None,
        }
        rows.append(row)
        shown = "exact" if row["sqnr_db"] is None else f"{row['sqnr_db']:8.1f}"
        print(f"{name[-64:]:<64} {op:<22} {100 * row['codes_differ']:11.2f}% {row['max_steps']:9d} {shown:>8}")
    logits_cpu, logits_htp = _from_graph(on_cpu[0], io["logits"]), _from_graph(on_htp[0], io["logits"])
    agreement = float((logits_cpu.argmax(-1) == logits_htp.argmax(-1)).mean())
    print(f"logits: top-1 agreement HTP vs CPU EP {agreement:.3f} over {logits_cpu.shape[-2]} positions")
    write_results(args, {"model": f"SmolLM2-135M-Instruct, first {args.layers} layers", "positions": int(ids.shape[0]),
                         "logits_top1_agreement": agreement, "rows": rows})


if __name__ == "__main__":
    main()

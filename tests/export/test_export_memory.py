"""The ONNX graphs hold the model's weights by reference until they are written: exporting an 8B
model must not need a second copy of its weights in host memory."""

from __future__ import annotations

import torch

from edge_llama.export import onnx_graphs
from edge_llama.export.onnx_graphs import canonical_parameters, export_onnx_graphs

from ..conftest import edge_from, tiny_llama


def test_graph_weights_are_the_models_tensors_until_written(tmp_path, monkeypatch):
    """Every weight initializer of a traced (two layers) and repeated (the rest) graph reads the
    parameter's own storage; `model.data` is written from those same tensors."""
    model = edge_from(tiny_llama(num_hidden_layers=4), context_length=64, ar_lengths=[16, 1])
    storage_of = {name: tensor.untyped_storage().data_ptr() for name, tensor in canonical_parameters(model)[0].items()}
    seen: dict[str, int] = {}
    written: list[str] = []
    optimize = onnx_graphs._optimize

    def check_then_optimize(onnx_model):
        for name, value in onnx_model.graph.initializers.items():  # already under the parameters' names
            if name in storage_of:
                raw = value.const_value.raw
                assert isinstance(raw, torch.Tensor), f"{name} was copied into {type(raw).__name__}"
                seen[name] = raw.untyped_storage().data_ptr()
        optimize(onnx_model)

    write = onnx_graphs.write_model_data

    def record_write(path, tensors):
        tensors = list(tensors)
        written.extend(name for name, tensor in tensors if tensor.untyped_storage().data_ptr() == storage_of[name])
        return write(path, tensors)

    monkeypatch.setattr(onnx_graphs, "_optimize", check_then_optimize)
    monkeypatch.setattr(onnx_graphs, "write_model_data", record_write)
    export_onnx_graphs(model, tmp_path)
    layer_weights = {name for name in storage_of if name.startswith("model.layers.")}
    assert layer_weights <= seen.keys()  # the repeated layers' weights too, not only the traced two
    assert seen == {name: storage_of[name] for name in seen}
    assert sorted(written) == sorted(storage_of)

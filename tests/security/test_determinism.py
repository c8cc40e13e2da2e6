"""The same quantization twice gives byte-identical `model.encodings` and `model.data`.

Nothing in quantization draws random numbers (calibration text is taken in order, RTN/AIMET min-max
are deterministic), so no seed is needed; these tests keep it that way."""

from __future__ import annotations

import json

import pytest

from edge_llama.export.onnx_graphs import canonical_parameters
from edge_llama.quantization.engines import get_engine
from edge_llama.serialization.model_data import write_model_data

from ..conftest import edge_from, tiny_llama


def _files(model, folder) -> dict[str, bytes]:
    """What `save_pretrained` writes as `model.encodings` and `model.data`, without the ONNX export."""
    engine = get_engine(model.quantization.recipe.engine)
    folder.mkdir()
    engine.encodings(model).write(folder / "model.encodings")
    write_model_data(folder / "model.data", canonical_parameters(engine.float_model(model))[0].items())
    return {name: (folder / name).read_bytes() for name in ("model.encodings", "model.data")}


def test_rtn_quantization_is_byte_identical(tmp_path):
    runs = []
    for run in range(2):
        model = edge_from(tiny_llama(tie_word_embeddings=True), context_length=64, ar_lengths=[16, 1])  # a fresh copy each time
        runs.append(_files(model.quantize("w4-rtn"), tmp_path / f"run{run}"))
    assert runs[0] == runs[1]
    assert json.loads(runs[0]["model.encodings"])["param_encodings"]  # not trivially equal


@pytest.mark.slow
def test_aimet_w4a16_saved_folders_are_byte_identical(tmp_path, default_tokenizer):
    """Calibrated AIMET w4a16 on a tiny model, saved twice (about 2 × 2 minutes here)."""
    folders = []
    for run in range(2):
        reference = tiny_llama(vocab_size=49152, hidden_size=128, intermediate_size=256, tie_word_embeddings=True)
        model = edge_from(reference, context_length=64, ar_lengths=[16, 1])
        quantized = model.quantize("w4a16", tokenizer=default_tokenizer, num_samples=2, sequence_length=32, progress=False)
        quantized.save_pretrained(tmp_path / f"run{run}")
        folders.append(tmp_path / f"run{run}")
    for name in ("model.encodings", "model.data", "model_ar16_cl64.onnx", "model_ar1_cl64.onnx"):
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name
    checksums = [json.loads((f / "config.json").read_text())["quantization_config"]["checksums"] for f in folders]
    assert checksums[0] == checksums[1]

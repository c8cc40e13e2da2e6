"""Saved folders the security tests tamper with: a float Llama and a quantized edge checkpoint (tiny)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ..conftest import edge_from, tiny_llama


@pytest.fixture(scope="session")
def quantized_model():
    model = edge_from(tiny_llama(tie_word_embeddings=True), context_length=64, ar_lengths=[16, 1])
    return model.quantize("w4-rtn")


@pytest.fixture(scope="session")
def saved_quantized(quantized_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("security") / "w4-rtn"
    quantized_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def saved_float(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("security") / "llama"
    tiny_llama().save_pretrained(folder)
    return folder


@pytest.fixture
def copy_of(tmp_path):
    """`copy_of(folder)`: a private copy to tamper with, inside `tmp_path / "victim"`."""

    def make(folder: Path) -> Path:
        target = tmp_path / "victim" / folder.name
        shutil.copytree(folder, target)
        return target

    return make


@pytest.fixture
def quick_graphs(saved_quantized, monkeypatch):
    """Replaces the ONNX export inside `save_pretrained` by a copy of the graphs it wrote before (the export
    takes ~30 s on this shared machine); everything else of the save runs for real."""

    def export(model, staging, activation_names=()):
        paths = {}
        for ar in model.config.ar_lengths:
            name = f"model_ar{ar}_cl{model.config.context_length}.onnx"
            paths[ar] = Path(shutil.copy(saved_quantized / name, staging / name))
        shutil.copy(saved_quantized / "model.data", staging / "model.data")
        return paths

    monkeypatch.setattr("edge_llama.export.onnx_graphs.export_onnx_graphs", export)
    return export


def fast(examples: int):
    """Hypothesis settings for a fast-suite property test: `examples` runs (times `EDGE_LLAMA_FUZZ_SCALE`,
    for a longer session) and no per-example deadline, since the machine is shared."""
    from hypothesis import HealthCheck, settings

    scale = int(os.environ.get("EDGE_LLAMA_FUZZ_SCALE", "1"))
    return settings(
        max_examples=examples * scale, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )

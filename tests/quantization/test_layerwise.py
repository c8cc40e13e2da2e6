"""Layer-at-a-time calibration gives the all-in-memory path's encodings, and resumes after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from edge_llama.quantization.aimet_engine import AimetEngine, _named_quantizers
from edge_llama.quantization.quantize import QuantizationState, copy_with_layout
from edge_llama.quantization.recipe import load_recipe

from ..conftest import edge_from, tiny_llama

ROOT = Path(__file__).resolve().parents[2]
# Small enough for seconds, big enough to matter: GQA (2 query heads per KV head), a padded first chunk
# (40 tokens = 8 + 2 × 16 at AR 16), and more than one layer.
SHAPE = dict(vocab_size=200, hidden_size=64, intermediate_size=96, num_attention_heads=2, num_key_value_heads=1,
             tie_word_embeddings=True)


def tiny_float_model(layers: int = 2):
    return edge_from(tiny_llama(num_hidden_layers=layers, **SHAPE), context_length=64, ar_lengths=[16, 1])


def calibration_tokens(samples: int = 3, length: int = 40) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return list(torch.randint(3, 200, (samples, 1, length), generator=generator))


def quantize(model, batches, use_seq_mse=False, **options):
    """The engine on a private copy in the recipe's layout (what `model.quantize` does, minus tokenizing)."""
    recipe = load_recipe("w4a16")
    quantized = copy_with_layout(model, recipe)
    quantized.quantization = QuantizationState(recipe, use_seq_mse=use_seq_mse)
    AimetEngine().quantize(quantized, recipe, batches, use_seq_mse=use_seq_mse, progress=False, **options)
    return quantized


def encodings_json(model) -> dict:
    return AimetEngine().encodings(model).to_json()


def quantizer_layout(model) -> list[tuple]:
    return [(name, kind, type(q).__name__, q.bitwidth, getattr(q, "symmetric", None), tuple(q.shape)) for name, kind, q in _named_quantizers(model)]


@pytest.fixture(scope="module")
def float_model():
    return tiny_float_model()


@pytest.fixture(scope="module")
def all_in_memory(float_model):
    return quantize(float_model, calibration_tokens())


def test_layerwise_gives_the_all_in_memory_encodings(float_model, all_in_memory):
    layerwise = quantize(float_model, calibration_tokens(), layerwise=True, calibration_batch_size=2)
    assert quantizer_layout(layerwise) == quantizer_layout(all_in_memory)  # the template-built simulation
    assert encodings_json(layerwise) == encodings_json(all_in_memory)
    ids = torch.tensor([[1, 5, 9, 17, 33]])
    assert torch.equal(layerwise(ids).logits, all_in_memory(ids).logits)


def test_batched_seq_mse_chooses_what_aimet_chooses(float_model):
    """Both paths run Sequential MSE (aimet's `apply_seq_mse` vs the Gram-matrix search, layer by layer)."""
    batches = calibration_tokens(samples=2)
    reference = quantize(float_model, batches, use_seq_mse=True)
    layerwise = quantize(float_model, batches, use_seq_mse=True, layerwise=True, calibration_batch_size=2)
    assert encodings_json(layerwise) == encodings_json(reference)
    plain = encodings_json(quantize(float_model, batches))  # and Sequential MSE did move some grids
    chosen = {e["name"]: e["scale"] for e in encodings_json(layerwise)["param_encodings"]}
    assert any(chosen[e["name"]] != e["scale"] for e in plain["param_encodings"] if e["bw"] == 4)


CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from tests.quantization.test_layerwise import calibration_tokens, quantize, tiny_float_model

def stall(index):
    if index == 1:  # two layers written: wait to be killed
        time.sleep(600)

quantize(tiny_float_model(layers=4), calibration_tokens(), use_seq_mse=True, layerwise=True,
         progress_dir={progress!r}, on_layer_done=stall)
"""


def test_resume_after_a_kill_ends_like_a_clean_run(tmp_path):
    progress = tmp_path / "progress"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(root=str(ROOT), progress=str(progress))))
    child = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "HF_HUB_OFFLINE": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    manifest = progress / "manifest.json"
    try:
        deadline = time.monotonic() + 240
        while not (manifest.is_file() and json.loads(manifest.read_text())["finished_layers"] == 2):
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child never finished two layers"
            time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert sorted(p.name for p in progress.iterdir()) == [
        "activations_after_1.safetensors", "layer_0.json", "layer_1.json", "manifest.json"]

    model, batches = tiny_float_model(layers=4), calibration_tokens()
    resumed = quantize(model, batches, use_seq_mse=True, layerwise=True, progress_dir=progress)
    assert resumed.quantization.layerwise_report.resumed_from_layer == 2
    clean = quantize(model, batches, use_seq_mse=True, layerwise=True)
    assert encodings_json(resumed) == encodings_json(clean)
    assert json.loads(manifest.read_text())["finished_layers"] == 4


def test_progress_of_another_run_is_refused(tmp_path, float_model):
    from edge_llama.quantization.layer_progress import ProgressError

    quantize(float_model, calibration_tokens(samples=1), layerwise=True, progress_dir=tmp_path)
    with pytest.raises(ProgressError, match="another quantization run"):
        quantize(float_model, calibration_tokens(samples=2), layerwise=True, progress_dir=tmp_path)

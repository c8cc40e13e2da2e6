"""Every example runs: fast on a tiny random Llama (with SmolLM2's tokenizer), slow on the embedded default."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from .conftest import tiny_llama

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, default_tokenizer) -> str:
    folder = tmp_path_factory.mktemp("examples") / "tiny-llama"
    tiny_llama(vocab_size=49152).save_pretrained(folder)
    default_tokenizer.save_pretrained(folder)
    return str(folder)


def test_every_example_has_a_test():
    tested = {"chat", "export_graphs", "quantize_and_reload", "compare_perplexity", "export_for_device"}
    assert {path.stem for path in EXAMPLES.glob("*.py")} == tested


def test_quantize_and_reload(tiny, tmp_path, capsys):
    again = load("quantize_and_reload").main(tiny, "w4-rtn", str(tmp_path / "q"), context_length=256)
    assert again.quantization.recipe.name == "w4-rtn"
    assert "reloaded logits identical" in capsys.readouterr().out


def test_compare_perplexity(tiny, capsys):
    perplexity = load("compare_perplexity").main(tiny, "w4-rtn", windows=1, context_length=256)
    assert perplexity["float"] > 1 and perplexity["w4-rtn"] > 1 and perplexity["float"] != perplexity["w4-rtn"]
    assert "perplexity: float" in capsys.readouterr().out


def test_export_for_device(tiny, tmp_path, capsys):
    folder = load("export_for_device").main(tiny, "onnx", "w4-rtn", str(tmp_path / "onnx"), context_length=256, parts=2)
    assert {"model.data", "part_2_of_2.encodings", "part_1_of_2_ar128_cl256.onnx"} <= {p.name for p in folder.iterdir()}
    assert "model.data" in capsys.readouterr().out


def test_chat(tiny, capsys):
    reply = load("chat").main("What is the capital of France?", tiny, max_new_tokens=4, context_length=256)
    assert isinstance(reply, str)


@pytest.mark.slow
def test_export_for_device_defaults_to_a_qnn_bundle(tiny, tmp_path):
    """The example's own defaults (w4a16 through aimet, QNN compile): 8 min on the tiny model on 2 busy cores."""
    folder = load("export_for_device").main(tiny, output_dir=str(tmp_path / "qnn"))
    names = {p.name for p in folder.iterdir()}
    assert {"metadata.json", "part_1_of_2_ar128_cl256_ctx_qnn.bin", "part_2_of_2_ar1_cl256_ctx_qnn.bin"} <= names


@pytest.mark.slow
def test_chat_example_answers():
    assert "Paris" in load("chat").main("What is the capital of France?", context_length=1024)


@pytest.mark.slow
def test_export_example_traces_both_graphs():
    programs = load("export_graphs").main(context_length=256)
    assert sorted(programs) == [1, 128]

"""`edge-llama evaluate` as users run it: a table, JSON, quantized folders, one-line errors."""

from __future__ import annotations

import json

import pytest

from edge_llama.cli.main import main

from ..conftest import tiny_llama
from . import error_lines


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, default_tokenizer):
    """A float Llama folder with SmolLM2's tokenizer, and its w4-rtn quantized folder."""
    folder = tmp_path_factory.mktemp("checkpoints")
    model = tiny_llama(vocab_size=49152, hidden_size=64, intermediate_size=112)
    model.save_pretrained(folder / "float")
    default_tokenizer.save_pretrained(folder / "float")
    assert main(["quantize", "--checkpoint", str(folder / "float"), "--recipe", "w4-rtn", "--context-length", "256", "-q",
                 "-o", str(folder / "w4-rtn")]) == 0
    return folder


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--checkpoint", "--task", "--num-samples", "--context-length", "--dataset-path", "--output-json",
                   "--reference-checkpoint", "wikitext-ppl", "mmlu", "hellaswag", "arc-easy", "piqa"):
        assert option in text


def test_float_and_quantized_checkpoints_print_a_table_and_write_json(checkpoints, tmp_path, capsys):
    results = {}
    for name in ("float", "w4-rtn"):
        output = tmp_path / f"{name}.json"
        code = main(["evaluate", "--checkpoint", str(checkpoints / name), "--task", "wikitext-ppl", "arc-easy",
                     "--num-samples", "2", "--context-length", "256", "--output-json", str(output), "-q"])
        assert code == 0, capsys.readouterr().err
        table = capsys.readouterr().out
        assert "perplexity" in table and "acc_norm" in table
        results[name] = json.loads(output.read_text())
    float_ppl, quantized_ppl = (results[n]["results"][0]["metrics"]["perplexity"] for n in ("float", "w4-rtn"))
    assert float_ppl != quantized_ppl
    assert results["float"]["results"][1]["metrics"]["samples"] == 2


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--task", "mmlu-pro"], "unknown task 'mmlu-pro'"),
        (["--task", "arc-easy", "--dataset-path", "/nowhere/rows.jsonl"], "/nowhere/rows.jsonl does not exist"),
        (["--context-length", "100000"], "larger than the model's max_position_embeddings"),
    ],
)
def test_bad_input_is_one_clear_line(checkpoints, arguments, message, capsys):
    code = main(["evaluate", "--checkpoint", str(checkpoints / "float"), *arguments])
    assert code == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and message in err[0]


def test_quantized_folder_window_is_fixed(checkpoints, capsys):
    code = main(["evaluate", "--checkpoint", str(checkpoints / "w4-rtn"), "--context-length", "512"])
    assert code == 2
    assert "static window (256)" in capsys.readouterr().err

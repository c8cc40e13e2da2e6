"""`edge-llama evaluate` as users run it: a table, JSON, quantized folders, one-line errors."""

from __future__ import annotations

import json

import pytest

from edge_llama.cli.main import main

from . import error_lines


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

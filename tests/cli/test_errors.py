"""Bad input on the command line: one line that says what to do, a stable non-zero exit code."""

from __future__ import annotations

import pytest

from edge_llama import CheckpointNotFoundError
from edge_llama.cli.main import EXIT_BAD_INPUT, main

from . import error_lines


def one_line(capsys) -> str:
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_wrong_flag_names_the_close_one(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--checkpiont", "DEFAULT", "-o", "x"])
    assert exit_info.value.code == EXIT_BAD_INPUT
    line = one_line(capsys)
    assert "unrecognized arguments: --checkpiont DEFAULT" in line
    assert "did you mean --checkpoint?" in line and "see 'edge-llama export --help'" in line


def test_wrong_value_and_missing_option_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--target", "tflite", "-o", "x"])
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert "argument --target: invalid choice: 'tflite'" in one_line(capsys)
    with pytest.raises(SystemExit) as exit_info:
        main(["quantize", "--recipe", "w4-rtn"])
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert "the following arguments are required: -o/--output-dir" in one_line(capsys)


@pytest.mark.parametrize("command", ["quantize", "evaluate", "demo", "export", "info"])
def test_missing_checkpoint_folder(command, tmp_path, capsys):
    argv = [command, "--checkpoint", str(tmp_path / "no" / "such-model")]
    if command in ("quantize", "export"):
        argv += ["--recipe", "w4-rtn", "-o", str(tmp_path / "out")]
    assert main(argv) == EXIT_BAD_INPUT
    assert f"checkpoint folder not found: {tmp_path / 'no' / 'such-model'}" in one_line(capsys)
    assert not (tmp_path / "out").exists()


def test_verbose_shows_the_traceback(tmp_path):
    with pytest.raises(CheckpointNotFoundError):
        main(["info", "--checkpoint", str(tmp_path / "missing"), "--verbose"])


def test_float_checkpoint_cannot_go_to_qnn(checkpoints, tmp_path, capsys):
    code = main(["export", "--checkpoint", str(checkpoints / "float"), "--target", "qnn", "--context-length", "256",
                 "-o", str(tmp_path / "qnn")])
    assert code == EXIT_BAD_INPUT
    line = one_line(capsys)
    assert "quantized with a QNN recipe" in line and "got a float model" in line and "--recipe w4a16" in line
    assert not (tmp_path / "qnn").exists()


def test_options_the_target_or_checkpoint_cannot_take(checkpoints, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["export", "--checkpoint", str(checkpoints / "w4-rtn"), "--device", "Snapdragon 8 Elite", "-o", out]) == 2
    assert "--device does not apply to the onnx target" in one_line(capsys)
    assert main(["export", "--checkpoint", str(checkpoints / "w4-rtn"), "--max-seq-len", "64", "-o", out]) == 2
    assert "--max-seq-len does not apply to the onnx target" in one_line(capsys)
    assert main(["export", "--checkpoint", str(checkpoints / "w4-rtn"), "--recipe", "8da4w", "-o", out]) == 2
    assert "already quantized with w4-rtn; --recipe 8da4w needs the float checkpoint" in one_line(capsys)
    assert not (tmp_path / "out").exists()

"""`edge-llama export` as users run it."""

from __future__ import annotations

from edge_llama.cli.main import main


def test_export_command_writes_onnx_parts(checkpoints, tmp_path, capsys):
    code = main(["export", "--checkpoint", str(checkpoints / "w4-rtn"), "--target", "onnx", "--parts", "2", "-q",
                 "-o", str(tmp_path / "onnx")])
    assert code == 0, capsys.readouterr().err
    names = {path.name for path in (tmp_path / "onnx").iterdir()}
    assert {"part_1_of_2_ar128_cl256.onnx", "part_2_of_2_ar1_cl256.onnx", "part_2_of_2.encodings", "model.data"} <= names


def test_export_refuses_impossible_parts(checkpoints, tmp_path, capsys):
    code = main(["export", "--checkpoint", str(checkpoints / "float"), "--parts", "9", "-o", str(tmp_path / "onnx")])
    assert code == 2
    assert "parts must be an integer from 2" in capsys.readouterr().err
    assert not (tmp_path / "onnx").exists()

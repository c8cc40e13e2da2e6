"""`edge-llama export` as users run it."""

from __future__ import annotations

import inspect

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


def test_info_describes_float_quantized_and_exported_folders(checkpoints, tmp_path, capsys):
    assert main(["info", "--checkpoint", str(checkpoints / "float")]) == 0
    out = capsys.readouterr().out
    assert "float" in out and "2 layers" in out and "config.json" in out
    assert main(["info", "--checkpoint", str(checkpoints / "w4-rtn")]) == 0
    out = capsys.readouterr().out
    assert "quantized" in out and "w4-rtn (rtn; weights 4 bit, activations float)" in out and "model.encodings" in out
    assert main(["export", "--checkpoint", str(checkpoints / "w4-rtn"), "--parts", "3", "-q", "-o", str(tmp_path / "e")]) == 0
    capsys.readouterr()
    assert main(["info", "--checkpoint", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "export for onnx" in out
    assert any(line.split() == ["parts", "3"] for line in out.splitlines())
    assert "recipe" in out and "w4-rtn" in out


def test_onnx_int4_export_takes_the_accuracy_level_and_prints_one_line_under_quiet(checkpoints, tmp_path, capfd):
    import onnx

    out = tmp_path / "int4"
    assert main(["export", "--checkpoint", str(checkpoints / "w4-rtn"), "--target", "onnx-int4", "--accuracy-level", "4",
                 "-q", "-o", str(out)]) == 0
    lines = capfd.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "(onnx-int4)" in lines[0], lines
    graph = onnx.load(out / "model.onnx", load_external_data=False).graph
    levels = {a.i for node in graph.node if node.op_type == "MatMulNBits" for a in node.attribute if a.name == "accuracy_level"}
    assert levels == {4}
    assert main(["export", "--checkpoint", str(checkpoints / "w4-rtn"), "--target", "onnx", "--accuracy-level", "4",
                 "-q", "-o", str(tmp_path / "onnx")]) == 2
    assert "--accuracy-level does not apply to the onnx target" in capfd.readouterr().err


def test_int4_as_int8_is_a_qnn_option_only(checkpoints, tmp_path, capfd):
    from edge_llama.export import export_function

    assert "int4_as_int8" in inspect.signature(export_function("qnn")).parameters
    assert main(["export", "--checkpoint", str(checkpoints / "w4-rtn"), "--target", "onnx-int4", "--int4-as-int8",
                 "-q", "-o", str(tmp_path / "int4")]) == 2
    assert "--int4-as-int8 does not apply to the onnx-int4 target" in capfd.readouterr().err
    assert not (tmp_path / "int4").exists()

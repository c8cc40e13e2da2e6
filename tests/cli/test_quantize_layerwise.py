"""`edge-llama quantize --layerwise`: the layer-wise options reach `model.quantize` and write progress."""

from __future__ import annotations

import json

import pytest

from edge_llama.cli.main import main


def test_layerwise_options_reach_the_calibrator(checkpoints, tmp_path, capsys):
    pytest.importorskip("aimet_torch")
    progress = tmp_path / "progress"
    code = main(["quantize", "--checkpoint", str(checkpoints / "float"), "--recipe", "w4a16", "--context-length", "256",
                 "--num-samples", "2", "--sequence-length", "32", "--layerwise", "--device", "cpu",
                 "--calibration-batch-size", "2", "--progress-dir", str(progress), "-q", "-o", str(tmp_path / "q")])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((progress / "manifest.json").read_text())
    assert manifest, "the per-layer progress manifest is empty"
    assert (tmp_path / "q" / "model.encodings").is_file()


def test_layer_options_without_layerwise_are_refused(checkpoints, tmp_path, capsys):
    code = main(["quantize", "--checkpoint", str(checkpoints / "float"), "--recipe", "w4a16",
                 "--progress-dir", str(tmp_path / "p"), "-q", "-o", str(tmp_path / "q")])
    assert code != 0
    assert "--layerwise" in capsys.readouterr().err

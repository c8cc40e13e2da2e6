"""AIMET 1.0.0 encodings: round trip, legacy 0.6.1, and clear errors."""

from __future__ import annotations

import json

import pytest

from edge_llama.quantization.encodings import Encodings, EncodingsError, TensorEncoding


def sample() -> Encodings:
    encodings = Encodings(quantizer_args={"activation_bitwidth": 16, "param_bitwidth": 4})
    encodings.activations["past_key_0_in"] = TensorEncoding("past_key_0_in", "PER_TENSOR", 8, True, [0.0125], [-128])
    encodings.params["q.weight"] = TensorEncoding("q.weight", "PER_CHANNEL", 4, True, [0.1, 0.2], [-8, -8])
    encodings.params["blk.weight"] = TensorEncoding("blk.weight", "PER_BLOCK", 4, False, [0.1] * 4, [-3] * 4, block_size=64)
    encodings.params["lpbq.weight"] = TensorEncoding(
        "lpbq.weight", "LPBQ", 8, True, [0.5, 0.25], [-128, -128], block_size=64, compressed_bw=4, per_block_int_scale=[1, 16, 3, 7]
    )
    encodings.activations["layers.0.mlp_residual:output0"] = TensorEncoding.floating("layers.0.mlp_residual:output0")
    return encodings


def test_round_trip(tmp_path):
    path = tmp_path / "model.encodings"
    sample().write(path)
    data = json.loads(path.read_text())
    assert data["version"] == "1.0.0"
    assert {"activation_encodings", "param_encodings", "excluded_layers", "quantizer_args"} <= set(data)
    assert Encodings.read(path) == sample()


def test_reads_legacy_061():
    legacy = {
        "activation_encodings": {"x": [{"bitwidth": 16, "dtype": "int", "is_symmetric": "False", "max": 1.0, "min": -1.0, "offset": -32768, "scale": 3e-5}]},
        "param_encodings": {"w": [{"bitwidth": 4, "dtype": "int", "is_symmetric": "True", "offset": -8, "scale": s} for s in (0.1, 0.2, 0.3)]},
    }
    encodings = Encodings.from_json(legacy)
    assert encodings.activations["x"].enc_type == "PER_TENSOR" and not encodings.activations["x"].is_sym
    assert encodings.params["w"].enc_type == "PER_CHANNEL" and encodings.params["w"].scale == [0.1, 0.2, 0.3]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(version="9.9"), "unsupported encodings version"),
        (lambda d: d["param_encodings"][0].update(enc_type="DIAGONAL"), r"q.weight.*enc_type"),
        (lambda d: d["param_encodings"][0].update(scale=[0.1]), r"q.weight.*same, non-zero length"),
        (lambda d: d["param_encodings"][0].update(scale=[0.1, -1.0]), r"q.weight.*scales must be positive"),
        (lambda d: d["param_encodings"][0].update(bw="4"), r"q.weight.*bw: expected an integer"),
        (lambda d: d["param_encodings"][1].pop("block_size"), r"blk.weight.*block_size"),
        (lambda d: d["param_encodings"][2].update(per_block_int_scale=[1, 2, 3]), r"lpbq.weight.*whole number of blocks"),
        (lambda d: d["param_encodings"].append(dict(d["param_encodings"][0])), "lists 'q.weight' twice"),
        (lambda d: d["activation_encodings"][0].update(scale=[0.1, 0.2], offset=[0, 0]), "PER_TENSOR encoding has one scale"),
        (lambda d: d.update(param_encodings={"q.weight": 1}), "param_encodings"),
    ],
)
def test_corruptions_are_named(tmp_path, mutate, message):
    data = sample().to_json()
    mutate(data)
    path = tmp_path / "model.encodings"
    path.write_text(json.dumps(data))
    with pytest.raises(EncodingsError, match=message):
        Encodings.read(path)


def test_not_json(tmp_path):
    path = tmp_path / "model.encodings"
    path.write_text("{not json")
    with pytest.raises(EncodingsError, match="not valid JSON"):
        Encodings.read(path)


def test_check_params_names_missing_extra_and_wrong_channels():
    encodings = sample()
    expected = {"q.weight": (2, 16), "blk.weight": (2, 128), "lpbq.weight": (2, 128)}
    encodings.check_params(expected)
    with pytest.raises(EncodingsError, match=r"no encoding for 1 .*'k.weight'"):
        encodings.check_params({**expected, "k.weight": (2, 16)})
    with pytest.raises(EncodingsError, match=r"does not have.*'lpbq.weight'"):
        encodings.check_params({"q.weight": (2, 16), "blk.weight": (2, 128)})
    with pytest.raises(EncodingsError, match="q.weight has 3 output channels but its encoding has 2 scales"):
        encodings.check_params({**expected, "q.weight": (3, 16)})
    with pytest.raises(EncodingsError, match="block_size 64 does not divide the 96 input channels"):
        encodings.check_params({**expected, "blk.weight": (2, 96)})
    with pytest.raises(EncodingsError, match="blk.weight has 2 output channels but its encoding has 4 scales"):
        encodings.check_params({**expected, "blk.weight": (2, 64)})


def test_float_entries_are_written_and_read_in_aimets_form():
    entry = TensorEncoding.floating("x").to_json()
    assert entry == {"name": "x", "enc_type": "PER_TENSOR", "dtype": "FLOAT", "bw": 16}  # what aimet-torch writes
    assert TensorEncoding.from_json(entry, "e") == TensorEncoding.floating("x")
    legacy = Encodings.from_json({"activation_encodings": {"x": [{"bitwidth": 16, "dtype": "float"}]}, "param_encodings": {}})
    assert legacy.activations["x"].is_float and legacy.activations["x"].bw == 16


@pytest.mark.parametrize(
    "change, message",
    [({"bw": 8}, "bw 16 \\(fp16\\) or 32, got 8"), ({"scale": [0.1]}, "has no scale or offset"),
     ({"enc_type": "PER_CHANNEL"}, "a FLOAT encoding is PER_TENSOR"), ({"is_sym": True}, "unknown key")],
)
def test_bad_float_entries_are_named(change, message):
    with pytest.raises(EncodingsError, match=message) as error:
        TensorEncoding.from_json({**TensorEncoding.floating("x").to_json(), **change}, "model.encodings: activation_encodings[3]")
    assert "activation_encodings[3] (x)" in str(error.value)

"""The Genie bundle files: values from the model's own config, and a validator that catches what Genie would."""

from __future__ import annotations

import json

import pytest

from edge_llama.export.genie import GenieBundleError, genie_config, htp_backend_config, validate_bundle
from edge_llama.presets import find_device

LLAMA_3_2 = {  # the parts of a Llama 3.2 config.json the Genie config reads
    "context_length": 4096, "vocab_size": 128256, "hidden_size": 3072, "num_attention_heads": 24, "head_dim": 128,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
}


def test_rope_scaling_is_the_models_own():
    dialog = genie_config(LLAMA_3_2, {"temperature": 0.6, "top_p": 0.9}, ["m_part_1_of_3.bin"])["dialog"]
    encoding = dialog["engine"]["model"]["positional-encoding"]
    assert encoding == {
        "type": "rope", "rope-dim": 64, "rope-theta": 500000,
        "rope-scaling": {"rope-type": "llama3", "factor": 32.0, "low-freq-factor": 1.0, "high-freq-factor": 4.0,
                         "original-max-position-embeddings": 8192},
    }
    assert dialog["context"] == {"version": 1, "size": 4096, "n-vocab": 128256, "bos-token": 128000, "eos-token": [128001, 128008, 128009]}
    assert dialog["sampler"] == {"version": 1, "seed": 42, "temp": 0.6, "top-k": 40, "top-p": 0.9}
    assert dialog["engine"]["backend"]["QnnHtp"]["kv-dim"] == 128


def test_plain_rope_has_no_scaling_and_only_keys_genie_knows():
    config = {**LLAMA_3_2, "rope_scaling": None, "rope_theta": 10000.0, "head_dim": None, "hidden_size": 576, "num_attention_heads": 9}
    engine = genie_config(config, None, ["a.bin"])["dialog"]["engine"]
    assert engine["model"]["positional-encoding"] == {"type": "rope", "rope-dim": 32, "rope-theta": 10000}
    # Genie rejects unknown QnnHtp keys ("Unknown QnnHtp config key"): only its own may appear.
    known = {"version", "use-mmap", "spill-fill-bufsize", "mmap-budget", "poll", "cpu-mask", "kv-dim", "allow-async-init"}
    assert set(engine["backend"]["QnnHtp"]) <= known


def _bundle(folder, device_name="Snapdragon 8 Gen 3"):
    device = find_device(device_name)
    metadata = {
        "device": {"name": device.name, "chipset": device.chipset, "soc_model": device.soc_model, "htp_arch": device.htp_arch},
        "num_parts": 2, "context_length": 4096, "ar_lengths": [128, 1],
        "graphs": [
            {"genie_name": f"{kind}_ar{ar}_cl4096_{i}_of_2", "part": f"part_{i}_of_2", "ar_length": ar,
             "context_file": f"part_{i}_of_2_ar{ar}_cl4096_ctx.onnx", "binary_file": f"part_{i}_of_2_ar{ar}_cl4096_ctx_qnn.bin"}
            for kind, ar in (("prompt", 128), ("token", 1)) for i in (1, 2)
        ],
        "genie_binaries": [{"file": f"m_part_{i}_of_2.bin", "part": f"part_{i}_of_2"} for i in (1, 2)],
    }
    for graph in metadata["graphs"]:
        (folder / graph["context_file"]).write_text("ctx")
        (folder / graph["binary_file"]).write_bytes(b"bin")
    for entry in metadata["genie_binaries"]:
        (folder / entry["file"]).write_bytes(b"bin")
    (folder / "metadata.json").write_text(json.dumps(metadata))
    (folder / "genie_config.json").write_text(json.dumps(genie_config({**LLAMA_3_2}, None, [e["file"] for e in metadata["genie_binaries"]])))
    (folder / "htp_backend_ext_config.json").write_text(json.dumps(htp_backend_config(device, True)))
    (folder / "tokenizer.json").write_text("{}")
    return folder


def test_a_complete_bundle_validates(tmp_path):
    validate_bundle(_bundle(tmp_path))


def test_validation_names_every_problem(tmp_path):
    folder = _bundle(tmp_path)
    (folder / "m_part_2_of_2.bin").unlink()
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["graphs"][0]["genie_name"] = "prompt_ar128_cl2048_1_of_2"
    (folder / "metadata.json").write_text(json.dumps(metadata))
    (folder / "htp_backend_ext_config.json").write_text(json.dumps(htp_backend_config(find_device("Snapdragon 8 Elite"), True)))
    with pytest.raises(GenieBundleError) as error:
        validate_bundle(folder)
    message = str(error.value)
    assert "ctx-bins names m_part_2_of_2.bin, which is not in" in message
    assert "named 'prompt_ar128_cl2048_1_of_2', expected 'prompt_ar128_cl4096_1_of_2'" in message
    assert "htp_backend_ext_config.json targets (69, 'v79'), the binaries (57, 'v75')" in message


def test_broken_json_and_a_missing_tokenizer_are_reported(tmp_path):
    folder = _bundle(tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(GenieBundleError, match="tokenizer path tokenizer.json is not in"):
        validate_bundle(folder)
    (folder / "genie_config.json").write_text("{not json")
    with pytest.raises(GenieBundleError, match="genie_config.json is not valid JSON"):
        validate_bundle(folder)

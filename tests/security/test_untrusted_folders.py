"""Crafted malicious folders: each is refused with an error that names the file and the problem.

Nothing here may run code, read outside the folder or allocate what a crafted header asks for; a
marker file shows whether a payload ran.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import onnx
import pytest
import torch

from edge_llama import EdgeLlamaError, EdgeLlamaForCausalLM, UnsupportedCheckpointError, load_tokenizer
from edge_llama.errors import CheckpointFileError
from edge_llama.quantization import encodings as encodings_module
from edge_llama.quantization.encodings import EncodingsError
from edge_llama.serialization import safety
from edge_llama.serialization.model_data import ModelDataError

from ..loopback_hub import LoopbackHub, point_hf_client_at

GRAPH = "model_ar1_cl64.onnx"


class _Payload:
    """Unpickling this creates `path`: proof that something unpickled untrusted bytes."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _write_config(folder: Path, edit) -> None:
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


def _edit_first_weight(folder: Path, graphs=(GRAPH, "model_ar16_cl64.onnx"), **external):
    """Rewrites the external-data entries (`location`, `offset`, `length`) or dims of one weight, in every graph
    of `graphs` (both AR graphs by default: they must agree on where a weight lives)."""
    name = None
    for graph in graphs:
        path = folder / graph
        model = onnx.load(str(path), load_external_data=False)
        external_weights = [i for i in model.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
        name = name or external_weights[0].name
        initializer = next(i for i in external_weights if i.name == name)
        if "dims" in external:
            del initializer.dims[:]
            initializer.dims.extend(external["dims"])
        for entry in initializer.external_data:
            if entry.key in external:
                entry.value = str(external[entry.key])
        onnx.save(model, str(path))
    return name


# -- no pickles, no remote code ------------------------------------------------------------------


def test_pickled_weights_are_never_unpickled(saved_float, copy_of, tmp_path):
    folder = copy_of(saved_float)
    marker = tmp_path / "payload-ran"
    (folder / "model.safetensors").unlink()
    torch.save({"model.embed_tokens.weight": _Payload(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointFileError, match=r"no safetensors weights, only pickled ones \(pytorch_model.bin\).*never unpickles"):
        EdgeLlamaForCausalLM.from_pretrained(folder)
    assert not marker.exists()


def test_a_pickle_beside_safetensors_is_ignored(saved_float, copy_of, tmp_path):
    folder = copy_of(saved_float)
    marker = tmp_path / "payload-ran"
    torch.save({"model.embed_tokens.weight": _Payload(marker)}, folder / "pytorch_model.bin")
    EdgeLlamaForCausalLM.from_pretrained(folder)
    assert not marker.exists()


def test_pickle_only_hub_repo_is_refused(saved_float, copy_of, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    folder = copy_of(saved_float)
    marker = tmp_path / "payload-ran"
    (folder / "model.safetensors").unlink()
    torch.save({"model.embed_tokens.weight": _Payload(marker)}, folder / "pytorch_model.bin")
    with LoopbackHub() as hub:
        point_hf_client_at(hub.endpoint, monkeypatch, tmp_path / "hf-cache")
        api = HfApi(token="hf_loopback_fake_token")
        api.create_repo("attacker/pickled")
        api.upload_folder(repo_id="attacker/pickled", folder_path=folder)
        with pytest.raises(CheckpointFileError, match="attacker/pickled has no safetensors weights"):
            EdgeLlamaForCausalLM.from_pretrained("attacker/pickled")
    assert not marker.exists()


def test_remote_code_in_config_is_never_imported(saved_float, copy_of, tmp_path):
    folder = copy_of(saved_float)
    marker = tmp_path / "payload-ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w')\nfrom transformers import LlamaConfig as EvilConfig\n")
    _write_config(folder, lambda c: c.update(model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig"}))
    with pytest.raises(UnsupportedCheckpointError, match="'evil' model"):
        EdgeLlamaForCausalLM.from_pretrained(folder)
    _write_config(folder, lambda c: c.update(model_type="llama"))  # a Llama that asks for its own code: not used
    EdgeLlamaForCausalLM.from_pretrained(folder)
    assert not marker.exists()


def test_remote_code_in_tokenizer_config_is_never_imported(tmp_path):
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    folder = tmp_path / "tok"
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>"))).save_pretrained(folder)
    marker = tmp_path / "payload-ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w')\n")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]})
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    try:
        load_tokenizer(folder)
    except (EdgeLlamaError, ValueError, OSError):
        pass  # refusing is fine; running the file is not
    assert not marker.exists()


# -- files that leave the folder -----------------------------------------------------------------


@pytest.mark.parametrize("location", ["/etc/passwd", "../model.data", "subdir/../../model.data"])
def test_external_data_outside_the_folder_is_refused(saved_quantized, copy_of, location):
    folder = copy_of(saved_quantized)
    name = _edit_first_weight(folder, graphs=[GRAPH], location=location)
    with pytest.raises(ModelDataError, match=rf"{GRAPH}: weight {name} points at .*; weights may only live in model.data"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize("file_name, what", [("model.data", "weights file"), (GRAPH, "graph"), ("model.encodings", "encodings file"), ("config.json", "config")])
def test_symlink_pointing_out_is_refused(saved_quantized, copy_of, tmp_path, file_name, what):
    folder = copy_of(saved_quantized)
    outside = tmp_path / f"outside-{file_name}"
    (folder / file_name).rename(outside)
    (folder / file_name).symlink_to(outside)
    with pytest.raises(CheckpointFileError, match=rf"{file_name}: the {what} is a link to .*outside-{file_name}, outside the checkpoint folder"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


def test_symlink_inside_the_folder_is_fine(saved_quantized, copy_of):
    folder = copy_of(saved_quantized)
    (folder / "blobs").mkdir()
    (folder / "model.data").rename(folder / "blobs" / "weights")
    (folder / "model.data").symlink_to("blobs/weights")
    EdgeLlamaForCausalLM.from_pretrained(folder)


def test_qnn_metadata_pointing_out_is_refused(saved_quantized, copy_of, tmp_path):
    pytest.importorskip("onnxruntime")
    folder = copy_of(saved_quantized)
    _write_config(folder, lambda c: (c.pop("quantization_config"), c.update(edge_llama_export={"target": "qnn"})))
    graphs = [{"context_file": "../../stolen_ctx.onnx", "binary_file": "x.bin", "ar_length": 1}]
    (folder / "metadata.json").write_text(json.dumps({"device": {"name": "Snapdragon 8 Elite"}, "graphs": graphs}))
    with pytest.raises(CheckpointFileError, match=r"context graph '../../stolen_ctx.onnx' is not a plain name inside the folder"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


# -- sizes and offsets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, message",
    [
        (dict(offset=10**12), r"needs bytes \[1000000000000, .*\) but the file has \d+ bytes"),
        (dict(offset=-64), r"needs bytes \[-64, "),
        (dict(length=12), r"needs \d+ bytes, the graph says 12"),
        (dict(offset="sixty-four"), "has no valid offset/length"),
        (dict(dims=[2**32, 2**32], length=0), r"has shape \[4294967296, 4294967296\], the model needs"),
        (dict(dims=[-1, 64]), r"model_ar\d+_cl64.onnx: model.embed_tokens.weight: negative dimension in shape \[-1, 64\]"),
    ],
    ids=["offset-past-end", "negative-offset", "wrong-length", "offset-not-a-number", "overflowing-shape", "negative-dim"],
)
def test_sizes_and_offsets_are_checked_before_reading(saved_quantized, copy_of, edit, message):
    folder = copy_of(saved_quantized)
    _edit_first_weight(folder, **edit)
    with pytest.raises(ModelDataError, match=message):
        EdgeLlamaForCausalLM.from_pretrained(folder)


def test_truncated_model_data_is_refused(saved_quantized, copy_of):
    folder = copy_of(saved_quantized)
    data = folder / "model.data"
    os.truncate(data, data.stat().st_size - 100)
    with pytest.raises(ModelDataError, match="truncated or does not belong to these graphs"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize("file_name, error", [("model.data", ModelDataError), ("model.encodings", EncodingsError)])
def test_a_changed_byte_that_still_parses_is_caught_by_the_checksum(saved_quantized, copy_of, file_name, error):
    folder = copy_of(saved_quantized)
    path = folder / file_name
    content = bytearray(path.read_bytes())
    if file_name == "model.encodings":  # the second digit of a scale: still valid JSON and a valid encoding
        index = re.search(rb'"scale": \[\s*\d\.\d', bytes(content)).end() - 1
        content[index] = ord("1") if content[index] != ord("1") else ord("2")
    else:  # a bit in the middle of a weight
        content[len(content) // 2] ^= 0x10
    path.write_bytes(bytes(content))
    with pytest.raises(error, match=rf"{file_name}: sha256 .* differs from .* recorded in config.json"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


# -- JSON files: huge, deep, of the wrong types ---------------------------------------------------


def test_huge_config_is_refused_before_parsing(saved_float, copy_of, monkeypatch):
    folder = copy_of(saved_float)
    monkeypatch.setattr(safety, "MAX_JSON_BYTES", 4096)  # instead of writing 64 MiB
    _write_config(folder, lambda c: c.update(padding="x" * 5000))
    with pytest.raises(CheckpointFileError, match=r"config.json: \d+ bytes is larger than the 4096-byte limit"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize("depth, message", [(100_000, "nested too deeply to read"), (200, "nested more than 64 levels deep")])
def test_deeply_nested_config_is_refused(saved_float, copy_of, depth, message):
    folder = copy_of(saved_float)
    config = (folder / "config.json").read_text().rstrip().rstrip("}")
    (folder / "config.json").write_text(config + ', "deep": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(CheckpointFileError, match=f"config.json: (JSON )?{message}"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_hidden_layers", "2", r"num_hidden_layers must be an integer in \[1, 4096\], found '2'"),
        ("num_hidden_layers", True, r"num_hidden_layers must be an integer in \[1, 4096\], found True"),
        ("hidden_size", 10**12, r"hidden_size must be an integer in \[1, 1048576\], found 1000000000000"),
        ("vocab_size", -5, r"vocab_size must be an integer"),
        ("rms_norm_eps", "tiny", "rms_norm_eps must be a number, found 'tiny'"),
        ("tie_word_embeddings", "yes", "tie_word_embeddings must be true or false"),
        ("rope_scaling", [1, 2], "rope_scaling must be an object or null, found list"),
        ("eos_token_id", [2, "three"], "eos_token_id must be a token id"),
        ("model_type", ["llama"], "model_type must be a string"),
    ],
)
def test_config_fields_of_the_wrong_type_are_named(saved_float, copy_of, field, value, message):
    folder = copy_of(saved_float)
    _write_config(folder, lambda c: c.update({field: value}))
    with pytest.raises(CheckpointFileError, match=f"config.json: {message}"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"model_type": "llama", "rope_theta": NaN}', "NaN is not a JSON number"),
        ('{"model_type": "llama", "model_type": "edge_llama"}', "key 'model_type' appears twice"),
        ('{"model_type": "llama", "vocab_size": ' + "9" * 5000 + "}", "not valid JSON"),
        ('["model_type", "llama"]', "expected a JSON object at the top, found list"),
        ('{"model_type": "llama"', "not valid JSON"),
        (b"\xff\xfe\x00{", "not valid JSON"),
    ],
    ids=["nan", "duplicate-key", "huge-integer", "not-an-object", "truncated", "not-utf8"],
)
def test_malformed_config_json_is_named(saved_float, copy_of, text, message):
    folder = copy_of(saved_float)
    path = folder / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CheckpointFileError, match=message):
        EdgeLlamaForCausalLM.from_pretrained(folder)


def test_quantized_config_of_the_wrong_type_is_named(saved_quantized, copy_of):
    folder = copy_of(saved_quantized)
    _write_config(folder, lambda c: c.update(ar_lengths="16,1"))
    with pytest.raises(CheckpointFileError, match="ar_lengths must be a non-empty list of positive integers, found '16,1'"):
        EdgeLlamaForCausalLM.from_pretrained(folder)
    _write_config(folder, lambda c: c.update(ar_lengths=[16, 1], quantization_config="w4-rtn"))
    with pytest.raises(CheckpointFileError, match="quantization_config must be an object or null, found str"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


def _write_encodings(folder: Path, edit) -> None:
    path = folder / "model.encodings"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["param_encodings"][0].update(bw="4"), r"param_encodings\[0\] \(.*\): bw: expected an integer, got '4'"),
        (lambda d: d["param_encodings"][0].update(scale=[float("nan")] * 64), "not a JSON number"),
        (lambda d: d["param_encodings"][0].pop("is_sym"), r"missing \['is_sym'\]"),
        (lambda d: d["param_encodings"].append(d["param_encodings"][0]), "lists '.*' twice"),
        (lambda d: d.pop("activation_encodings"), "missing 'activation_encodings'"),
        (lambda d: d.update(param_encodings={"a": 1}), "legacy param_encodings|expected a list"),
        (lambda d: d.update(excluded_layers=[{"nested": []}]), "excluded_layers must be a list of layer names"),
        (lambda d: d.update(quantizer_args=[[[[[[[[[[]]]]]]]]]]), "nested more than 8 levels deep"),
    ],
    ids=["bw-string", "nan-scale", "missing-is_sym", "duplicate", "no-activations", "legacy-garbage", "excluded-objects", "deep"],
)
def test_malformed_encodings_are_named(saved_quantized, copy_of, edit, message):
    folder = copy_of(saved_quantized)
    _write_encodings(folder, edit)
    with pytest.raises(EncodingsError, match=f"model.encodings: .*{message}"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


def test_huge_encodings_are_refused_before_parsing(saved_quantized, copy_of, monkeypatch):
    folder = copy_of(saved_quantized)
    monkeypatch.setattr(encodings_module, "MAX_FILE_BYTES", 1024)
    with pytest.raises(EncodingsError, match=r"model.encodings: \d+ bytes is larger than the 1024-byte limit"):
        EdgeLlamaForCausalLM.from_pretrained(folder)


def test_untouched_folder_still_loads(saved_quantized, copy_of, quantized_model):
    again = EdgeLlamaForCausalLM.from_pretrained(copy_of(saved_quantized))
    ids = torch.arange(3, 40).view(1, -1)
    with torch.no_grad():
        assert torch.equal(again(ids).logits, quantized_model(ids).logits)


def test_swapped_offsets_of_same_shaped_weights_are_caught(saved_quantized, copy_of):
    """Two weights of one shape trading places still pass every size check: the graphs' sha256 catches it."""
    folder = copy_of(saved_quantized)
    for graph in (GRAPH, "model_ar16_cl64.onnx"):
        model = onnx.load(str(folder / graph), load_external_data=False)
        weights = {i.name: i for i in model.graph.initializer}
        first, second = (weights[f"model.layers.0.self_attn.q_proj.{head}.weight"] for head in (0, 1))
        entries = lambda initializer: {e.key: e for e in initializer.external_data}  # noqa: E731
        a, b = entries(first)["offset"], entries(second)["offset"]
        a.value, b.value = b.value, a.value
        onnx.save(model, str(folder / graph))
    with pytest.raises(ModelDataError, match=r"model_ar\d+_cl64.onnx: sha256 .* differs"):
        EdgeLlamaForCausalLM.from_pretrained(folder)

"""`export(target="qnn")`: context binaries compiled here that run on the HTP simulator like the simulation."""

from __future__ import annotations

import json

import pytest
import torch

from edge_llama import EdgeLlamaConfigError, EdgeLlamaForCausalLM
from edge_llama.cli.main import main
from edge_llama.export.genie import validate_bundle
from edge_llama.export.qnn import QnnExportError

from ..conftest import edge_from, tiny_llama

# v79 and v73: two HTP generations; every fixture compiles once per module. The v73 bundle stores its
# 4-bit weights as int8 codes × 16 (`int4_as_int8`), so both weight forms go through every test.
DEVICES = {"Snapdragon 8 Elite": ("SM8750", 69, "v79"), "Snapdragon 8 Gen 2": ("SM8550", 43, "v73")}
WIDENED = {"Snapdragon 8 Gen 2"}


@pytest.fixture(scope="module")
def float_model():
    reference = tiny_llama(vocab_size=49152, hidden_size=128, intermediate_size=256)
    return edge_from(reference, context_length=64, ar_lengths=[16, 1])


@pytest.fixture(scope="module")
def w4a16(float_model, default_tokenizer):
    return float_model.quantize("w4a16", tokenizer=default_tokenizer, num_samples=2, sequence_length=32, progress=False)


@pytest.fixture(scope="module")
def bundles(w4a16, default_tokenizer, tmp_path_factory):
    folders = {}
    for device in DEVICES:
        folders[device] = tmp_path_factory.mktemp("qnn") / "bundle"
        w4a16.export("qnn", folders[device], device=device, parts=2, tokenizer=default_tokenizer, int4_as_int8=device in WIDENED)
    return folders


@pytest.fixture(scope="module")
def bundle(bundles):
    return bundles["Snapdragon 8 Elite"]


def test_one_context_binary_per_part_and_ar(bundle):
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert metadata["device"] == {"name": "Snapdragon 8 Elite", "chipset": "SM8750", "soc_model": 69, "htp_arch": "v79"}
    names = [graph["genie_name"] for graph in metadata["graphs"]]
    assert names == ["prompt_ar16_cl64_1_of_2", "prompt_ar16_cl64_2_of_2", "token_ar1_cl64_1_of_2", "token_ar1_cl64_2_of_2"]
    for graph in metadata["graphs"]:
        assert (bundle / graph["context_file"]).is_file() and (bundle / graph["binary_file"]).stat().st_size > 0
    # Genie's I/O: integer tensors under Genie's names, each with its scale and offset.
    inputs = {i["name"]: i for i in metadata["graphs"][1]["inputs"]}
    assert {"position_ids_cos", "position_ids_sin", "attention_mask", "past_key_0_in"} <= set(inputs)
    assert inputs["past_key_0_in"]["dtype"] == "int8" and inputs["past_key_0_in"]["quantization"]["offset"] == 0
    assert inputs["attention_mask"]["dtype"] == "uint16" and inputs["attention_mask"]["shape"] == [1, 1, 16, 64]
    assert metadata["graphs"][0]["inputs"][0] == {"name": "input_ids", "dtype": "int32", "shape": [1, 16]}
    assert json.loads((bundle / "config.json").read_text())["edge_llama_export"]["device"] == "Snapdragon 8 Elite"


@pytest.mark.parametrize("device", DEVICES)
def test_genie_bundle_validates_for_the_device(bundles, device):
    bundle = bundles[device]
    validate_bundle(bundle)
    chipset, soc_model, arch = DEVICES[device]
    htp = json.loads((bundle / "htp_backend_ext_config.json").read_text())
    assert htp["devices"][0]["soc_model"] == soc_model and htp["devices"][0]["dsp_arch"] == arch
    assert htp["context"]["weight_sharing_enabled"] is True
    genie = json.loads((bundle / "genie_config.json").read_text())["dialog"]
    assert genie["context"]["size"] == 64 and genie["context"]["n-vocab"] == 49152
    assert genie["engine"]["model"]["binary"]["ctx-bins"] == ["edge_llama_part_1_of_2.bin", "edge_llama_part_2_of_2.bin"]
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert metadata["int4_as_int8"] is (device in WIDENED)
    shared = metadata["genie_binaries"]
    # One context per part with both AR graphs, weights stored once: about one graph's bytes, not two.
    for part in shared:
        assert [g["genie_name"] for g in part["graphs"]][1].startswith("token_ar1_cl64_")
        per_graph = [(bundle / g["binary_file"]).stat().st_size for g in metadata["graphs"] if g["part"] == part["part"]]
        assert part["bytes"] < 1.2 * max(per_graph)
    assert f"Hexagon {arch}" in (bundle / "README.md").read_text()


@pytest.mark.parametrize("device", DEVICES)
def test_bundle_runs_on_the_htp_simulator_like_the_simulation(bundles, w4a16, device):
    from edge_llama.evaluation.agreement import agreement

    exported = EdgeLlamaForCausalLM.from_pretrained(bundles[device])
    torch.manual_seed(0)
    ids = torch.randint(3, 49152, (1, 21))  # a padded prompt chunk and AR-16 + AR-1 calls
    with torch.no_grad():
        on_npu, simulated = exported(ids).logits, w4a16(ids).logits
    measured = agreement(simulated, on_npu)
    top1, sqnr = measured["top1_agreement"], measured["logits_sqnr_db"]
    print(f"{device}: top-1 agreement {top1:.3f}, logits SQNR {sqnr:.1f} dB")
    assert top1 >= 0.9 and sqnr >= 25
    check = json.loads((bundles[device] / "metadata.json").read_text())["simulator_check"]
    assert check["top1_agreement"] == 1.0 and check["sqnr_db"] >= 25
    greedy = exported.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert greedy.shape == (1, 25)


def test_lpbq_weights_compile_and_run_on_the_htp_simulator(float_model, default_tokenizer, tmp_path, caplog):
    """w4a16-lpbq's 4-bit blocks with 8-bit per-block scales go in as a blocked DequantizeLinear; HTP
    compiles them with CPU fallback disabled and answers like the simulation. Compiled as int4, the
    export says what that costs and how to avoid it."""
    import logging

    from edge_llama.evaluation.agreement import agreement

    lpbq = float_model.quantize("w4a16-lpbq", tokenizer=default_tokenizer, num_samples=2, sequence_length=32, progress=False)
    lpbq.save_pretrained(tmp_path / "checkpoint")
    weights = json.loads((tmp_path / "checkpoint" / "model.encodings").read_text())["param_encodings"]
    assert any(entry["enc_type"] == "LPBQ" for entry in weights)
    with caplog.at_level(logging.INFO, logger="edge_llama.export.qnn"):
        lpbq.export("qnn", tmp_path / "bundle", device="Snapdragon 8 Elite", parts=2, tokenizer=default_tokenizer, weight_sharing=False)
    assert "4-bit weights go to HTP as int4" in caplog.text and "--int4-as-int8" in caplog.text
    exported = EdgeLlamaForCausalLM.from_pretrained(tmp_path / "bundle")
    torch.manual_seed(0)
    ids = torch.randint(3, 49152, (1, 21))
    with torch.no_grad():
        measured = agreement(lpbq(ids).logits, exported(ids).logits)
    print(f"w4a16-lpbq on Snapdragon 8 Elite: top-1 agreement {measured['top1_agreement']:.3f}, "
          f"logits SQNR {measured['logits_sqnr_db']:.1f} dB")
    assert measured["top1_agreement"] >= 0.9 and measured["logits_sqnr_db"] >= 25


def test_float_models_are_refused(float_model, tmp_path):
    with pytest.raises(QnnExportError, match="QNN recipe .* got a float model.*Quantize it first.*fp16"):
        float_model.export("qnn", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_an_fp16_residual_stream_needs_a_device_with_fp16(w4a16):
    import dataclasses

    from edge_llama.export.qnn import check_quantized
    from edge_llama.presets import find_device

    check_quantized(w4a16, find_device("Snapdragon 8 Gen 2"))
    without_fp16 = dataclasses.replace(find_device("Snapdragon 8 Gen 2"), fp16=False)
    with pytest.raises(QnnExportError, match="keeps the residual stream in fp16.*residual_stream: integer"):
        check_quantized(w4a16, without_fp16)


def test_a_part_over_the_graph_limit_asks_for_more_parts():
    import dataclasses

    from edge_llama.export.qnn import check_graph_sizes
    from edge_llama.presets import find_device

    elite = find_device("Snapdragon 8 Elite")
    assert elite.max_graph_bytes == 2_000_000_000 and elite.ai_hub_chipset == "qualcomm-snapdragon-8-elite"
    small = dataclasses.replace(elite, max_graph_bytes=1_000_000)
    sizes = {"part_1_of_2_ar1_cl64": 400_000, "part_2_of_2_ar1_cl64": 2_500_000}
    with pytest.raises(QnnExportError, match=r"part_2_of_2_ar1_cl64 holds 2.5 MB of weights, over the 1.0 MB .* parts=4 \(now 2\)"):
        check_graph_sizes(sizes, small, num_parts=2)
    check_graph_sizes(sizes, elite, num_parts=2)


def test_unknown_device_lists_the_known_ones(w4a16, tmp_path):
    with pytest.raises(EdgeLlamaConfigError, match="unknown device 'Tensor G4'; known devices: .*Snapdragon 8 Elite"):
        w4a16.export("qnn", tmp_path / "bundle", device="Tensor G4")


def test_geometry_of_an_export_cannot_change_on_load(bundle):
    with pytest.raises(EdgeLlamaConfigError, match="exported model"):
        EdgeLlamaForCausalLM.from_pretrained(bundle, context_length=128)


def test_evaluate_command_runs_the_bundle(bundle, default_tokenizer, tmp_path, capsys):
    default_tokenizer.save_pretrained(bundle)
    text = tmp_path / "text.txt"
    text.write_text("The mill by the river grinds wheat every morning. " * 20)
    code = main(["evaluate", "--checkpoint", str(bundle), "--task", "wikitext-ppl", "--dataset-path", str(text), "--num-samples", "1", "-q"])
    assert code == 0, capsys.readouterr().err
    assert "perplexity" in capsys.readouterr().out


def test_demo_header_names_the_simulator(bundle, default_tokenizer, capsys):
    default_tokenizer.save_pretrained(bundle)
    code = main(["demo", "--checkpoint", str(bundle), "--prompt", "Hi", "--max-output-tokens", "2"])
    assert code == 0, capsys.readouterr().err
    assert "QNN context binaries for Snapdragon 8 Elite (SM8750) · x86 HTP simulator" in capsys.readouterr().out


def test_an_existing_folder_is_not_replaced(w4a16, tmp_path, capsys):
    from edge_llama.export import ExportError

    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists and is not empty; .*overwrite=True"):
        w4a16.export("qnn", tmp_path / "bundle")
    assert (tmp_path / "bundle" / "notes.txt").read_text() == "mine"
    code = main(["export", "--checkpoint", "DEFAULT", "--target", "qnn", "-o", str(tmp_path / "bundle")])
    assert code == 2 and "--overwrite" in capsys.readouterr().err  # refused before the model is even loaded

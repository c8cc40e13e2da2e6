"""export(target="qai-hub"): no token → one clear error before any work; the job plan and upload layout up to the network call."""

from __future__ import annotations

import json

import onnx
import pytest

from edge_llama.export import TARGETS
from edge_llama.export.onnx_parts import export_onnx_parts
from edge_llama.export.qai_hub import QaiHubExportError, plan_jobs
from edge_llama.presets import find_device
from edge_llama.quantization.encodings import Encodings, TensorEncoding

from ..conftest import edge_from, tiny_llama


@pytest.fixture(scope="module")
def float_model():
    return edge_from(tiny_llama(), context_length=64, ar_lengths=[16, 1])


@pytest.fixture(scope="module")
def onnx_parts(float_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    export_onnx_parts(float_model, folder, parts=2)
    # The layout test needs one encodings file per part; a real one would come from model.quantize().
    cos = TensorEncoding("position_cos", "PER_TENSOR", 16, False, [3.05e-5], [-32767])
    for part in ("part_1_of_2", "part_2_of_2"):
        Encodings(activations={"position_cos": cos}).write(folder / f"{part}.encodings")
    return folder


def test_no_token_fails_at_once_naming_both_ways_out(float_model, tmp_path, monkeypatch):
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "no-such-client.ini"))
    assert "qai-hub" in TARGETS
    with pytest.raises(QaiHubExportError, match=r"no Qualcomm AI Hub API token .*qai-hub configure --api_token .*target='qnn'"):
        float_model.export("qai-hub", tmp_path / "bundle")  # a float model: the token is checked before anything else
    assert not (tmp_path / "bundle").exists()


def test_job_plan_compiles_each_graph_for_genie_and_links_each_part(onnx_parts, tmp_path):
    plan = plan_jobs(onnx_parts, tmp_path / "upload", "smollm2", find_device("Snapdragon 8 Elite"))
    assert plan.device_attributes == ("chipset:qualcomm-snapdragon-8-elite",)
    assert [c.graph_name for c in plan.compile] == [
        "prompt_ar16_cl64_1_of_2", "token_ar1_cl64_1_of_2", "prompt_ar16_cl64_2_of_2", "token_ar1_cl64_2_of_2"
    ]
    options = plan.compile[3].options.split()
    assert options[:2] == ["--target_runtime", "qnn_dlc"] and "--quantize_io" in options and "--truncate_64bit_io" in options
    assert options[-2:] == ["--qnn_options", "context_enable_graphs=token_ar1_cl64_2_of_2"]
    assert options[options.index("--output_names") + 1].startswith("logits,past_key_0_out,past_key_1_out,past_value_0_out")
    assert [(link.part, link.graph_names, link.binary_file) for link in plan.link] == [
        ("part_1_of_2", ("prompt_ar16_cl64_1_of_2", "token_ar1_cl64_1_of_2"), "smollm2_part_1_of_2.bin"),
        ("part_2_of_2", ("prompt_ar16_cl64_2_of_2", "token_ar1_cl64_2_of_2"), "smollm2_part_2_of_2.bin"),
    ]
    assert [p.options for p in plan.profile][0] == "--qnn_options context_enable_graphs=prompt_ar16_cl64_1_of_2 --max_profiler_iterations 50"
    json.dumps(plan.to_dict())  # the plan is data


def test_upload_folders_are_ai_hubs_aimet_form_with_genie_input_names(onnx_parts, tmp_path):
    plan = plan_jobs(onnx_parts, tmp_path / "upload", "m", find_device("Snapdragon 8 Gen 2"), skip_profiling=True)
    assert plan.profile == ()
    folder = plan.compile[2].model_dir
    assert folder.name == "part_2_of_2_ar16_cl64.aimet"
    assert sorted(p.suffix for p in folder.iterdir()) == [".data", ".encodings", ".onnx"]  # what qai_hub accepts as AIMET-ONNX
    graph = onnx.load(str(folder / "part_2_of_2_ar16_cl64.onnx"))  # loads its weights from the model.data beside it
    assert {"position_ids_cos", "position_ids_sin"} <= {value.name for value in graph.graph.input}
    assert "position_cos" not in {name for node in graph.graph.node for name in node.input}
    assert "position_ids_cos" in Encodings.read(folder / "part_2_of_2_ar16_cl64.encodings").activations
    from qai_hub.client import _get_model_dir_type

    assert _get_model_dir_type(str(folder)).name == "AIMET_ONNX"


def test_a_float_export_has_no_encodings_to_upload(onnx_parts, tmp_path):
    import shutil

    shutil.copytree(onnx_parts, tmp_path / "onnx", ignore=shutil.ignore_patterns("*.encodings"))
    with pytest.raises(QaiHubExportError, match="part_1_of_2.encodings is missing: the qai-hub target uploads a quantized"):
        plan_jobs(tmp_path / "onnx", tmp_path / "upload", "m", find_device("Snapdragon 8 Elite"))


def test_the_command_checks_the_token_before_loading_anything(tmp_path, monkeypatch, capsys):
    from edge_llama.cli.main import main

    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "no-such-client.ini"))
    code = main(["export", "--checkpoint", str(tmp_path / "not-loaded"), "--target", "qai-hub", "-o", str(tmp_path / "out")])
    assert code == 2 and "qai-hub configure --api_token" in capsys.readouterr().err


def test_int4_as_int8_uploads_the_same_weight_grids_as_8_bit(onnx_parts, tmp_path):
    import shutil

    shutil.copytree(onnx_parts, tmp_path / "onnx")
    for index in (1, 2):  # int4 per-channel encodings for every weight the part's graph holds
        part = f"part_{index}_of_2"
        graph = onnx.load(str(tmp_path / "onnx" / f"{part}_ar16_cl64.onnx"), load_external_data=False).graph
        encodings = Encodings.read(tmp_path / "onnx" / f"{part}.encodings")
        for weight in graph.initializer:
            if len(weight.dims) >= 2:
                encodings.params[weight.name] = TensorEncoding(weight.name, "PER_CHANNEL", 4, True, [0.01 * (c + 1) for c in range(weight.dims[0])], [-8] * weight.dims[0])
        encodings.write(tmp_path / "onnx" / f"{part}.encodings")
    device = find_device("Snapdragon 8 Gen 3")
    narrow = plan_jobs(tmp_path / "onnx", tmp_path / "int4", "m", device, skip_profiling=True)
    wide = plan_jobs(tmp_path / "onnx", tmp_path / "int8", "m", device, skip_profiling=True, int4_as_int8=True)
    read = lambda plan, i, stem: Encodings.read(plan.compile[i].model_dir / f"{stem}.encodings").params  # noqa: E731
    before, after = read(narrow, 2, "part_2_of_2_ar16_cl64"), read(wide, 2, "part_2_of_2_ar16_cl64")
    name = "model.layers.0.mlp.down_proj.weight"
    assert (before[name].bw, after[name].bw) == (4, 8)
    assert [s * 16 for s in after[name].scale] == pytest.approx(before[name].scale, rel=1e-12)
    assert after[name].offset == [-128] * len(before[name].offset)
    assert {n for n, e in after.items() if e.bw == 4} == set()  # every 2-D weight of part 2 feeds a conv or matmul
    embedding = read(wide, 0, "part_1_of_2_ar16_cl64")  # read by Gather: no accumulator, stays 4-bit
    assert {e.bw for e in embedding.values()} == {4}

"""export(target="executorch"): the `.pte` runs in executorch.runtime and computes the host model."""

from __future__ import annotations

import json

import pytest
import torch

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.export.executorch import ExecuTorchExportError
from edge_llama.generation.program_runner import ProgramRunner

from ..conftest import edge_from, relative_error, tiny_llama

pytest.importorskip("executorch")

CONTEXT = 64
MAX_SEQ_LEN = 16


@pytest.fixture(scope="module")
def reference():
    return tiny_llama(intermediate_size=128)  # XNNPACK's int4 groups are multiples of 32


@pytest.fixture(scope="module")
def float_export(reference, tmp_path_factory):
    edge = edge_from(reference, context_length=CONTEXT, ar_lengths=[16, 1])
    folder = tmp_path_factory.mktemp("pte") / "tiny-float"
    edge.export("executorch", folder, max_seq_len=MAX_SEQ_LEN)
    return folder


@pytest.fixture(scope="module")
def quantized_pair(reference, tmp_path_factory):
    edge = edge_from(reference, context_length=CONTEXT, ar_lengths=[16, 1], use_conv_projections=False,
                     use_split_head_attention=False)
    qmodel = edge.quantize("8da4w")
    folder = tmp_path_factory.mktemp("pte") / "tiny-8da4w"
    qmodel.export("executorch", folder, max_seq_len=MAX_SEQ_LEN)
    return qmodel, EdgeLlamaForCausalLM.from_pretrained(folder)


def test_folder_holds_the_program_metadata_and_config(float_export):
    from executorch.runtime import Runtime

    from edge_llama.export.executorch_program import load_custom_ops

    load_custom_ops()
    program = Runtime.get().load_program(float_export / "model.pte")
    metadata = {name: program.load_method(name).execute([])[0] for name in program.method_names if name != "forward"}
    assert metadata["get_max_context_len"] == CONTEXT
    assert metadata["get_max_seq_len"] == MAX_SEQ_LEN
    assert metadata["get_vocab_size"] == 160 and metadata["get_n_layers"] == 2
    assert metadata["get_bos_id"] == 1 and metadata["get_eos_ids"] == 2 and metadata["use_kv_cache"] is True
    config = json.loads((float_export / "config.json").read_text())
    assert config["edge_llama_export"]["target"] == "executorch"
    assert config["edge_llama_export"]["program"] == "model.pte"


def test_float_program_reproduces_llama_within_the_window(reference, float_export):
    model = EdgeLlamaForCausalLM.from_pretrained(float_export)
    assert isinstance(model.runner, ProgramRunner)
    assert "ExecuTorch" in model.runner.backend.description
    ids = torch.randint(3, 160, (1, CONTEXT - 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert relative_error(model(ids).logits, reference(ids).logits) <= 1e-4
        # prompt in chunks, then token by token, through generate()
        expected = reference.generate(ids[:, :20], max_new_tokens=30, do_sample=False)
        assert torch.equal(model.generate(ids[:, :20], max_new_tokens=30, do_sample=False), expected)


def test_interleaved_windows_and_conversations_past_the_context(float_export):
    model = EdgeLlamaForCausalLM.from_pretrained(float_export)
    runner = model.runner
    ids = torch.randint(3, 160, (3 * CONTEXT,), generator=torch.Generator().manual_seed(2))
    first, second = runner.new_window(), runner.new_window()
    a1 = runner.process(ids[:20], first)
    b = runner.process(ids[20:50], second)  # the program's one cache now holds `second`
    a2 = runner.process(ids[20:30], first)  # `first` is rebuilt before it continues
    whole = runner.process(ids[:30], runner.new_window())
    assert relative_error(torch.cat((a1, a2)), whole) <= 1e-5
    assert b.shape == (30, 160)
    # Past CL the window shifts; every token still gets finite logits and positions keep counting.
    window = runner.new_window()
    logits = runner.process(ids, window)
    assert logits.shape == (3 * CONTEXT, 160) and torch.isfinite(logits).all()
    assert window.num_seen == 3 * CONTEXT and len(window.tokens) <= CONTEXT


def test_8da4w_program_matches_the_host_simulation(quantized_pair):
    host, program = quantized_pair
    ids = torch.randint(3, 160, (1, 48), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = host(ids).logits, program(ids).logits
    agreement = (expected.argmax(-1) == got.argmax(-1)).float().mean().item()
    # With the recipe's bfloat16 weight scales (what XNNPACK's int4 group kernels hold) the host
    # computes what the program computes, up to float summation order (which can move an int8
    # activation code across a rounding boundary now and then). With float32 scales: 0.98, 0.05.
    assert agreement == 1.0, agreement
    assert relative_error(got, expected) <= 0.01


def test_8da4w_weight_scales_are_what_xnnpack_holds(quantized_pair):
    host, program = quantized_pair
    scales = [m.weight.scale for m in host.modules() if isinstance(m, torch.nn.Linear) and hasattr(m.weight, "scale")]
    assert scales and all(scale.dtype == torch.bfloat16 for scale in scales)


def test_recipes_for_other_targets_are_refused_with_the_fix(reference, tmp_path):
    edge = edge_from(reference, context_length=CONTEXT, ar_lengths=[16, 1])
    qmodel = edge.quantize("w4-rtn")
    with pytest.raises(ExecuTorchExportError, match="8da4w"):
        qmodel.export("executorch", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_groups_xnnpack_cannot_take_are_refused(tmp_path):
    reference = tiny_llama()  # intermediate 112: down_proj falls back to groups of 16
    qmodel = edge_from(reference, context_length=CONTEXT, ar_lengths=[16, 1]).quantize("8da4w")
    with pytest.raises(ExecuTorchExportError, match="multiples of 32"):
        qmodel.export("executorch", tmp_path / "out")


def test_demo_header_names_the_programs_chunk_not_the_static_graphs_ar(float_export, reference):
    from edge_llama.cli.demo import _chunking

    assert _chunking(EdgeLlamaForCausalLM.from_pretrained(float_export)) == f"chunks of up to {MAX_SEQ_LEN} tokens"
    assert _chunking(edge_from(reference, context_length=CONTEXT, ar_lengths=[16, 1])) == "AR 16/1"

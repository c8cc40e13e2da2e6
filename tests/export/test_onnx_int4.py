"""export(target="onnx-int4"): MatMulNBits built from our own codes, run by onnxruntime (and onnxruntime-genai)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from onnx import TensorProto, helper

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.export import onnx_int4_graph as graph
from edge_llama.export.onnx_int4 import OnnxInt4ExportError
from edge_llama.generation.program_runner import ProgramRunner

from ..conftest import edge_from, relative_error, tiny_llama

CONTEXT = 64
MAX_SEQ_LEN = 16
VOCAB = 160
AWQ_VOCAB = 49152  # the real tokenizer's, so AWQ calibrates on real text


@pytest.fixture(scope="module")
def reference():
    return tiny_llama(intermediate_size=128)  # MLP width 128: w4-awq groups of 64 and 128


@pytest.fixture(scope="module")
def awq_reference():
    return tiny_llama(vocab_size=AWQ_VOCAB, intermediate_size=128, tie_word_embeddings=True)  # the float head is tied


@pytest.fixture(scope="module")
def float_export(reference, tmp_path_factory):
    edge = edge_from(reference, context_length=CONTEXT, ar_lengths=[16, 1])  # NPU layout: exported from HF weights
    folder = tmp_path_factory.mktemp("onnx-int4") / "tiny-float"
    edge.export("onnx-int4", folder, max_seq_len=MAX_SEQ_LEN)
    return folder


@pytest.fixture(scope="module")
def awq_pair(awq_reference, default_tokenizer, default_model_path, tmp_path_factory):
    edge = edge_from(awq_reference, context_length=CONTEXT, ar_lengths=[16, 1])
    edge.name_or_path = default_model_path  # same vocabulary: the export carries SmolLM2's tokenizer files
    qmodel = edge.quantize("w4-awq", tokenizer=default_tokenizer, num_samples=2, sequence_length=32, awq_grid=5, progress=False)
    folder = tmp_path_factory.mktemp("onnx-int4") / "tiny-w4-awq"
    qmodel.export("onnx-int4", folder, max_seq_len=MAX_SEQ_LEN)
    return qmodel, folder


@pytest.fixture(scope="module")
def awq_greedy(awq_pair):
    """(prompt, the host simulation's 32 greedy tokens after it)."""
    host, _ = awq_pair
    prompt = probe(12, seed=7, vocab=AWQ_VOCAB)
    return prompt, host.generate(prompt, max_new_tokens=32, do_sample=False)


def probe(length: int, seed: int = 1, vocab: int = VOCAB) -> torch.LongTensor:
    return torch.randint(3, vocab, (1, length), generator=torch.Generator().manual_seed(seed))


def test_matmul_nbits_packing_computes_our_dequantized_weight():
    """One MatMulNBits node in onnxruntime against `x @ dequantize(codes).T`: asymmetric groups of 48
    (written as blocks of 16 repeating the scale), an odd number of blocks (padded zero points)."""
    rng = np.random.default_rng(0)
    rows, width, group = 24, 144, 48
    codes = rng.integers(0, 16, (rows, width), dtype=np.uint8)
    scale = rng.uniform(0.01, 0.1, (rows, width // group)).astype(np.float32)
    offset = -rng.integers(0, 16, (rows, width // group)).astype(np.float32)
    weight = ((codes.reshape(rows, -1, group) + offset[..., None]) * scale[..., None]).reshape(rows, width)
    block = graph.matmul_nbits_block(group)
    packed, scales, zero_points = graph.pack_matmul_nbits(codes, scale, offset, block)
    assert block == 16 and packed.shape == (rows, width // 16, 8) and zero_points.shape == (rows, 5)
    node = helper.make_node("MatMulNBits", ["x", "b", "s", "z"], ["y"], domain="com.microsoft",
                            K=width, N=rows, bits=4, block_size=block)
    model = helper.make_model(
        helper.make_graph(
            [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, width])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, rows])],
            [onnx.numpy_helper.from_array(a, n) for a, n in ((packed, "b"), (scales, "s"), (zero_points, "z"))],
        ),
        opset_imports=[helper.make_opsetid("", graph.OPSET), helper.make_opsetid("com.microsoft", 1)],
    )
    model.ir_version = graph.IR_VERSION
    x = rng.standard_normal((3, width)).astype(np.float32)
    (y,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(y, x @ weight.T, rtol=1e-5, atol=1e-5)
    # symmetric grids (offset -8) need no zero-point input: 8 is the kernel's default
    assert graph.pack_matmul_nbits(codes, scale, np.full_like(offset, -8), block)[2] is None


def test_folder_holds_the_genai_form(awq_pair):
    _, folder = awq_pair
    names = {path.name for path in folder.iterdir()}
    assert {"model.onnx", "model.onnx.data", "genai_config.json", "config.json", "generation_config.json", "tokenizer.json"} <= names
    genai = json.loads((folder / "genai_config.json").read_text())
    decoder = genai["model"]["decoder"]
    assert genai["model"]["type"] == "llama" and genai["model"]["context_length"] == CONTEXT
    assert genai["model"]["vocab_size"] == AWQ_VOCAB and decoder["head_size"] == 64 and decoder["num_key_value_heads"] == 2
    assert decoder["inputs"]["past_key_names"] == "past_key_values.%d.key"
    model = onnx.load(folder / "model.onnx", load_external_data=False)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("MatMulNBits") == 2 * 7 and ops.count("GroupQueryAttention") == 2 and "MatMul" not in ops
    assert [i.name for i in model.graph.input][:5] == ["input_ids", "attention_mask", "position_ids",
                                                       "past_key_values.0.key", "past_key_values.0.value"]
    assert [o.name for o in model.graph.output][:3] == ["logits", "present.0.key", "present.0.value"]
    blocks = {a.i for node in model.graph.node if node.op_type == "MatMulNBits" for a in node.attribute if a.name == "block_size"}
    assert blocks == {64, 128}  # w4-awq's g128 falls back to 64 on the 64-wide inputs
    config = json.loads((folder / "config.json").read_text())
    assert config["edge_llama_export"]["target"] == "onnx-int4"
    assert config["edge_llama_export"]["recipe"]["recipe"] == "w4-awq"
    assert "quantization_config" not in config


def test_float_export_reproduces_llama(reference, float_export):
    model = EdgeLlamaForCausalLM.from_pretrained(float_export)
    assert isinstance(model.runner, ProgramRunner)
    assert model.runner.backend.description.startswith("float32 · ONNX Runtime int4 (float MatMul")
    ids = probe(CONTEXT - 5)
    with torch.no_grad():
        assert relative_error(model(ids).logits, reference(ids).logits) <= 1e-4
        expected = reference.generate(ids[:, :20], max_new_tokens=32, do_sample=False)
        assert torch.equal(model.generate(ids[:, :20], max_new_tokens=32, do_sample=False), expected)


def test_w4_awq_export_matches_the_host_simulation(awq_pair, awq_greedy):
    host, folder = awq_pair
    exported = EdgeLlamaForCausalLM.from_pretrained(folder)
    assert "w4-awq · ONNX Runtime int4 (MatMulNBits" in exported.runner.backend.description
    agreements, errors = [], []
    with torch.no_grad():
        for seed in range(5):  # 5 × 60 = 300 positions, prompts in chunks of 16
            ids = probe(CONTEXT - 4, seed, vocab=AWQ_VOCAB)
            expected, got = host(ids).logits, exported(ids).logits
            agreements.append((expected.argmax(-1) == got.argmax(-1)).float().mean().item())
            errors.append(relative_error(got, expected))
        assert np.mean(agreements) >= 0.99 and max(errors) <= 1e-3, (agreements, errors)
        prompt, expected = awq_greedy
        assert torch.equal(exported.generate(prompt, max_new_tokens=32, do_sample=False), expected)


def test_split_head_w4_rtn_per_channel_export_matches(reference, tmp_path):
    """w4-rtn keeps the NPU layout (per-head projections, conv weights): its per-head encodings are joined."""
    host = edge_from(reference, context_length=CONTEXT, ar_lengths=[16, 1]).quantize("w4-rtn")
    assert host.config.use_split_head_attention and not host.config.tie_word_embeddings
    host.export("onnx-int4", tmp_path / "rtn", max_seq_len=MAX_SEQ_LEN)
    exported = EdgeLlamaForCausalLM.from_pretrained(tmp_path / "rtn")
    ids = probe(40, seed=3)
    with torch.no_grad():
        assert relative_error(exported(ids).logits, host(ids).logits) <= 1e-4
    ops = [n.op_type for n in onnx.load(tmp_path / "rtn" / "model.onnx", load_external_data=False).graph.node]
    assert ops.count("MatMulNBits") == 2 * 7 + 1  # lm_head too


def test_windows_interleave_and_conversations_slide_past_the_context(float_export):
    runner = EdgeLlamaForCausalLM.from_pretrained(float_export).runner
    ids = probe(3 * CONTEXT, seed=2)[0]
    first, second = runner.new_window(), runner.new_window()
    a1 = runner.process(ids[:20], first)
    runner.process(ids[20:50], second)
    a2 = runner.process(ids[20:30], first)  # each window carries its own cache: nothing is rebuilt
    whole = runner.process(ids[:30], runner.new_window())
    assert relative_error(torch.cat((a1, a2)), whole) <= 1e-5
    window = runner.new_window()
    logits = runner.process(ids, window)
    assert logits.shape == (3 * CONTEXT, VOCAB) and torch.isfinite(logits).all()
    assert window.num_seen == 3 * CONTEXT and len(window.tokens) <= CONTEXT


def test_onnxruntime_genai_loads_the_folder_and_generates_the_same(awq_pair, awq_greedy):
    og = pytest.importorskip("onnxruntime_genai")
    _, folder = awq_pair
    prompt, expected = awq_greedy
    expected = expected[0].tolist()
    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(expected), do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt[0].tolist())
    while not generator.is_done():
        generator.generate_next_token()
    assert [int(t) for t in generator.get_sequence(0)] == expected
    tokenizer = og.Tokenizer(model)  # the tokenizer files load too
    assert list(tokenizer.encode("Hello world"))


def test_recipes_for_other_targets_are_refused_with_the_fix(reference, tmp_path):
    qmodel = edge_from(reference, context_length=CONTEXT, ar_lengths=[16, 1]).quantize("8da4w")
    with pytest.raises(OnnxInt4ExportError, match="8da4w") as error:
        qmodel.export("onnx-int4", tmp_path / "out")
    message = str(error.value)
    assert "executorch: 8da4w" in message and "onnx-int4: w4-awq, w4-rtn" in message and "qnn: " in message
    assert not (tmp_path / "out").exists()


def test_groups_matmul_nbits_cannot_take_are_refused(reference, tmp_path):
    recipe = yaml.safe_load((graph.Path(__file__).parents[2] / "configs/quantization/w4-rtn.yaml").read_text())
    recipe.update(name="w4-g8", weights={"bits": 4, "granularity": "per-group", "symmetric": False, "group_size": 8})
    (tmp_path / "w4-g8.yaml").write_text(yaml.safe_dump(recipe))
    qmodel = edge_from(reference, context_length=CONTEXT, ar_lengths=[16, 1]).quantize(tmp_path / "w4-g8.yaml")
    with pytest.raises(OnnxInt4ExportError, match="groups of 8 .* multiple of 16"):
        qmodel.export("onnx-int4", tmp_path / "out")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_smollm2_w4_awq_export_decodes_and_scores_like_the_host(default_model_path, default_tokenizer, tmp_path):
    """SmolLM2-135M, w4-awq: the export's greedy answer, logits and perplexity are the host simulation's."""
    from edge_llama.evaluation import evaluate
    from edge_llama.generation.chat import encode_prompt

    host = EdgeLlamaForCausalLM.from_pretrained(default_model_path, context_length=256).quantize(
        "w4-awq", num_samples=4, sequence_length=256, progress=False
    )
    host.export("onnx-int4", tmp_path / "smollm2-w4-awq")
    exported = EdgeLlamaForCausalLM.from_pretrained(tmp_path / "smollm2-w4-awq")
    prompt = encode_prompt(default_tokenizer, "What is the capital of France?")
    with torch.no_grad():
        expected = host.generate(prompt, max_new_tokens=32, min_new_tokens=32, do_sample=False)
        assert torch.equal(exported.generate(prompt, max_new_tokens=32, min_new_tokens=32, do_sample=False), expected)
    scores = {
        name: evaluate(model, "wikitext-ppl", tokenizer=default_tokenizer, num_samples=4, progress=False).metrics["perplexity"]
        for name, model in (("host", host), ("export", exported))
    }
    print(f"SmolLM2 w4-awq perplexity, 4 windows of 256: {scores}")
    assert abs(scores["export"] / scores["host"] - 1) <= 1e-3, scores

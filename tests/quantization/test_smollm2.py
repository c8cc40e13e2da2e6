"""The recipes on the real SmolLM2-135M: quantize, answer, and round-trip bit for bit (slow)."""

from __future__ import annotations

import time

import pytest
import torch

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.data import load_corpus
from edge_llama.evaluation.agreement import agreement, noise_floor
from edge_llama.generation.chat import encode_prompt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(default_model_path):
    return EdgeLlamaForCausalLM.from_pretrained(default_model_path, context_length=256)


@pytest.fixture(scope="module")
def w4a16(smollm2):
    """Quantized once (about 80 s here) for the recipe test and the QNN test."""
    return smollm2.quantize("w4a16", num_samples=1, sequence_length=128)


def probe(model, tokenizer):
    ids = tokenizer("The lighthouse keeper wrote down the weather every morning.", return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


def answer(model, tokenizer, max_new_tokens=8) -> str:
    ids = encode_prompt(tokenizer, "What is the capital of France?")
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


# Saving exports both ONNX graphs (about 35 s here with the repeated layers), so the round trip runs once per engine:
# w8a16 is saved and loaded by the same AIMET code as w4a16.
@pytest.mark.parametrize(
    "recipe, options, round_trip",
    [
        ("w4a16", dict(num_samples=1, sequence_length=128), True),
        ("w8a16", dict(num_samples=1, sequence_length=128), False),
        ("8da4w", {}, True),
        ("w4-awq", dict(num_samples=2, sequence_length=256, awq_grid=5, progress=False), True),
    ],
)
def test_recipe_on_smollm2(recipe, options, round_trip, smollm2, w4a16, default_tokenizer, tmp_path):
    quantized = w4a16 if recipe == "w4a16" else smollm2.quantize(recipe, **options)
    text = answer(quantized, default_tokenizer)
    words = text.split()
    assert words and text.strip()[0].isupper() and len(set(words)) > len(words) // 2, text  # a sentence, not a loop
    if not round_trip:
        return
    expected = probe(quantized, default_tokenizer)
    quantized.save_pretrained(tmp_path / recipe)
    again = EdgeLlamaForCausalLM.from_pretrained(tmp_path / recipe)
    assert torch.equal(probe(again, default_tokenizer), expected)



# Compiling part 2 (30 layers) takes about 3 min for AR 128 and 5 min for AR 1 here; one AR-128 call
# on the simulator about 75 s. Genie's weight-shared binaries would compile both again and do not
# load on the x86 simulator, so this test leaves them out (the tiny-model tests cover them).
@pytest.mark.timeout(2400)
def test_w4a16_qnn_bundle_answers_on_the_htp_simulator(w4a16, default_tokenizer, tmp_path):
    """The whole QNN flow on the real model: the context binaries on the HTP simulator answer like the
    host simulation (before the RMSNorm fix they produced garbage: fp16 overflow of massive activations).
    The 4-bit weights go in as int8 codes × 16 (`int4_as_int8`): with int4 ones HTP's conv arithmetic
    costs ~13 dB of logits SQNR (tests/export/test_htp_arithmetic.py, benchmarks/htp_agreement.py)."""
    w4a16.export("qnn", tmp_path / "bundle", device="Snapdragon 8 Gen 3", weight_sharing=False, int4_as_int8=True)
    on_simulator = EdgeLlamaForCausalLM.from_pretrained(tmp_path / "bundle")
    prompt = encode_prompt(default_tokenizer, "What is the capital of France?")
    greedy = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=16, do_sample=False)
    started = time.perf_counter()
    on_htp_tokens = on_simulator.generate(prompt, **greedy)[0, prompt.shape[1] :]
    seconds_per_token = (time.perf_counter() - started) / len(on_htp_tokens)
    host_tokens = w4a16.generate(prompt, **greedy)[0, prompt.shape[1] :]
    shorter = min(len(on_htp_tokens), len(host_tokens))  # an answer may end (EOS) before 16 tokens
    same = int((on_htp_tokens[:shorter] == host_tokens[:shorter]).long().cumprod(0).sum())
    text = default_tokenizer.decode(on_htp_tokens, skip_special_tokens=True)
    print(f"greedy 16: {same} leading tokens equal to the host's ({len(on_htp_tokens)} and {len(host_tokens)} tokens); "
          f"{seconds_per_token:.1f} s per token on the simulator "
          f"(prompt included); HTP: {text!r}, host: {default_tokenizer.decode(host_tokens, skip_special_tokens=True)!r}")
    assert "Paris" in text, text
    held_apart = load_corpus(None, "evaluation").joined("\n\n")
    ids = default_tokenizer(held_apart, return_tensors="pt", add_special_tokens=False).input_ids[:, :128]  # one AR-128 call
    with torch.no_grad():
        expected, actual = w4a16(ids).logits, on_simulator(ids).logits
    on_htp, floor = agreement(expected, actual), noise_floor(w4a16, ids, expected=expected)
    print(f"HTP simulator vs host simulation: top-1 agreement {on_htp['top1_agreement']:.3f} over {ids.shape[1]} "
          f"positions, logits SQNR {on_htp['logits_sqnr_db']:.1f} dB; host vs itself with fp32-rounding noise: "
          f"{floor['top1_agreement']:.3f}, {floor['logits_sqnr_db']:.1f} dB")
    # With int4 weights on HTP: 0.797 (int16 residuals), 0.766 / 15.1 dB (fp16 ones, before the weight-tie
    # fix), 0.805 / 14.9 dB (both fixes, fp16 embedding). As int8 codes x 16 (2026-12-06): 0.945 / 27.0 dB
    # against a floor of 0.969 / 29.6 dB. Issue 5 asks 0.99, above the host's own noise floor with the int8
    # KV cache (0.957 over 256 positions at CL 1024, benchmarks/agreement_noise_floor.py), so the test holds
    # HTP to the floor: within 5 points of top-1 and 6 dB of SQNR (int4 weights missed both by far).
    assert on_htp["top1_agreement"] >= floor["top1_agreement"] - 0.05
    assert on_htp["logits_sqnr_db"] >= floor["logits_sqnr_db"] - 6.0

"""Packed weight size: quantized grids at their bit width plus scales, the rest at 16 bit."""

from __future__ import annotations

import pytest

from edge_llama.quantization.encodings import TensorEncoding
from edge_llama.quantization.footprint import _encoded_bytes, weight_bytes

from ..conftest import edge_from, tiny_llama


def test_float_model_counts_every_distinct_weight_at_16_bit():
    model = edge_from(tiny_llama(tie_word_embeddings=True), context_length=64, ar_lengths=[16, 1])
    distinct = {id(p): p.numel() for p in model.parameters()}
    assert weight_bytes(model) == 2 * sum(distinct.values())


def test_4_bit_weights_take_about_a_quarter(default_tokenizer):
    model = edge_from(tiny_llama(vocab_size=49152, hidden_size=128, intermediate_size=256), context_length=64, ar_lengths=[16, 1])
    quantized = model.quantize("w4-rtn", progress=False)
    projections = sum(m.weight.numel() for n, m in quantized.named_modules() if hasattr(m, "weight") and ("proj" in n or n == "lm_head"))
    saved = weight_bytes(model) - weight_bytes(quantized)
    # 16 → 4 bits saves 1.5 bytes per projection weight, minus the per-channel float32 scales.
    assert 1.45 * projections < saved < 1.5 * projections


@pytest.mark.parametrize(
    "encoding, expected",
    [
        (TensorEncoding("w", "PER_CHANNEL", 4, True, [0.1] * 8, [-8] * 8), 64 * 4 // 8 + 8 * 4),
        (TensorEncoding("w", "PER_BLOCK", 4, False, [0.1] * 16, [0] * 16, block_size=32), 32 + 16 * 8),
        (TensorEncoding("w", "LPBQ", 8, True, [0.1] * 8, [-128] * 8, block_size=32, compressed_bw=4,
                        per_block_int_scale=[1] * 16), 32 + 8 * 4 + 8),
    ],
)
def test_encoded_bytes(encoding, expected):
    assert _encoded_bytes(64, encoding) == expected

"""The agreement measures and the noise floor that tells rounding from a bug."""

from __future__ import annotations

import math

import pytest
import torch

from edge_llama.evaluation.agreement import agreement, noise_floor, rounding_noise
from ..conftest import edge_from, tiny_llama


def test_agreement_counts_top1_and_measures_the_noise():
    expected = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 4.0], [2.0, 2.5, 0.0]])
    actual = expected.clone()
    assert agreement(expected, actual) == {"top1_agreement": 1.0, "logits_sqnr_db": math.inf, "max_relative_error": 0.0}
    actual[3] = torch.tensor([2.5, 2.0, 0.0])  # the last position's top-1 flips
    result = agreement(expected, actual)
    assert result["top1_agreement"] == 0.75
    signal, noise = expected.pow(2).mean(), (actual - expected).pow(2).mean()
    assert result["logits_sqnr_db"] == pytest.approx(10 * math.log10(signal / noise), abs=0.05)
    assert result["max_relative_error"] == pytest.approx(0.5 / 4.0)


def test_agreement_refuses_logits_of_different_shapes():
    with pytest.raises(ValueError, match=r"expected \(2, 3\), got \(2, 4\)"):
        agreement(torch.zeros(2, 3), torch.zeros(2, 4))


def test_a_float_model_does_not_move_under_rounding_noise_and_the_hooks_go_away():
    model = edge_from(tiny_llama())
    ids = torch.randint(3, 160, (1, 24))
    with torch.no_grad():
        clean = model(ids).logits
        with rounding_noise(model, eps=1e-3):
            assert not torch.equal(model(ids).logits, clean)  # the noise reaches the projections
        assert torch.equal(model(ids).logits, clean)  # and leaves with the block
    floor = noise_floor(model, ids)
    assert floor["top1_agreement"] == 1.0
    assert floor["logits_sqnr_db"] > 80


def test_a_quantized_model_amplifies_rounding_noise_that_a_float_one_shrugs_off():
    model = edge_from(tiny_llama(), use_split_head_attention=False, use_conv_projections=False)
    ids = torch.randint(3, 160, (1, 48))
    quantized = model.quantize("8da4w")
    float_floor, quantized_floor = noise_floor(model, ids, eps=1e-6), noise_floor(quantized, ids, eps=1e-6)
    assert quantized_floor["logits_sqnr_db"] < float_floor["logits_sqnr_db"] - 20


def test_rounding_noise_needs_a_projection():
    with pytest.raises(ValueError, match="no Linear or Conv2d"):
        with rounding_noise(torch.nn.ReLU()):
            pass

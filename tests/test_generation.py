"""The host runner and transformers' generate() on top of it."""

from __future__ import annotations

import pytest
import torch
from transformers import TextStreamer

from edge_llama.generation import plan_chunks

from .conftest import edge_from, tiny_llama
from .reference import reference_logits, visibility

CL, AR = 64, 16


@pytest.mark.parametrize(
    "num_tokens, expected",
    [
        (0, []),
        (1, [(1, 1)]),
        (5, [(16, 5)]),
        (16, [(16, 16)]),
        (17, [(1, 1), (16, 16)]),
        (37, [(16, 5), (16, 16), (16, 16)]),
    ],
)
def test_plan_chunks(num_tokens, expected):
    assert plan_chunks(num_tokens, [16, 1]) == expected


def test_plan_chunks_with_a_middle_ar():
    assert plan_chunks(40, [32, 8, 1]) == [(8, 8), (32, 32)]
    assert plan_chunks(3, [32, 8, 1]) == [(8, 3)]


@pytest.fixture(scope="module")
def models():
    reference = tiny_llama(seed=3)
    return reference, edge_from(reference, context_length=CL, ar_lengths=[AR, 1])


def test_greedy_generate_matches_llama(models):
    reference, edge = models
    prompt = torch.randint(3, 160, (1, 21))
    kwargs = dict(max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0)
    expected = reference.generate(prompt, **kwargs)
    actual = edge.generate(prompt, **kwargs)
    assert actual.shape == (1, 21 + 32)
    assert torch.equal(actual, expected)


def test_generate_stops_on_eos(models):
    reference, edge = models
    prompt = torch.randint(3, 160, (1, 9))
    free = edge.generate(prompt, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    stop_token = int(free[0, 9 + 4])  # make the fifth new token the end-of-sequence token
    stopped = edge.generate(prompt, max_new_tokens=12, do_sample=False, eos_token_id=stop_token, pad_token_id=0)
    first = (free[0, 9:] == stop_token).nonzero()[0].item()
    assert stopped.shape[1] == 9 + first + 1
    assert torch.equal(stopped[0], free[0, : 9 + first + 1])


def test_sampling_is_seeded_and_differs_from_greedy(models):
    _, edge = models
    prompt = torch.randint(3, 160, (1, 9))
    kwargs = dict(max_new_tokens=24, do_sample=True, temperature=1.5, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(7)
    first = edge.generate(prompt, **kwargs)
    torch.manual_seed(7)
    second = edge.generate(prompt, **kwargs)
    greedy = edge.generate(prompt, max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(first, second)
    assert not torch.equal(first, greedy)


def test_generate_streams_through_text_streamer(models):
    _, edge = models
    seen = []

    class Recorder(TextStreamer):
        def put(self, value):
            seen.append(value.clone())

        def end(self):
            seen.append("end")

    prompt = torch.randint(3, 160, (1, 9))
    out = edge.generate(prompt, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0, streamer=Recorder(None))
    assert torch.equal(seen[0].view(-1), prompt.view(-1))
    assert [int(t) for t in seen[1:-1]] == out[0, 9:].tolist()
    assert seen[-1] == "end"


def test_generation_continues_a_conversation_past_the_context(models):
    """A second turn reuses the window; together the turns are longer than CL. Every greedy token is
    the argmax of the reference model under the window rule for the calls generate() made."""
    reference, edge = models
    options = dict(max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)
    turn1 = edge.generate(torch.randint(3, 160, (1, 30)), return_dict_in_generate=True, **options)
    window = turn1.past_key_values
    assert window.get_seq_length() == 30 + 20 - 1  # the last generated token is not yet processed
    second_prompt = torch.cat([turn1.sequences, torch.randint(3, 160, (1, 25))], dim=1)
    turn2 = edge.generate(second_prompt, past_key_values=window, **options)
    assert turn2.shape[1] == second_prompt.shape[1] + 20 > CL

    calls = plan_chunks(30, [AR, 1]) + [(1, 1)] * 19 + plan_chunks(26, [AR, 1]) + [(1, 1)] * 19
    processed = turn2[:, :-1]
    expected = reference_logits(reference, processed, visibility(calls, CL)).argmax(-1)
    generated = list(range(30, 50)) + list(range(75, 95))
    assert [int(turn2[0, i]) for i in generated] == [int(expected[i - 1]) for i in generated]


def test_batch_of_two_is_refused_clearly(models):
    _, edge = models
    with pytest.raises(ValueError, match="one sequence at a time"):
        edge(torch.randint(3, 160, (2, 5)))


def test_padding_is_refused_clearly(models):
    _, edge = models
    with pytest.raises(ValueError, match="padded positions"):
        edge(torch.randint(3, 160, (1, 5)), attention_mask=torch.tensor([[0, 1, 1, 1, 1]]))


def test_labels_give_the_causal_lm_loss(models):
    reference, edge = models
    input_ids = torch.randint(3, 160, (1, 40))
    with torch.no_grad():
        expected = reference(input_ids, labels=input_ids).loss
        actual = edge(input_ids, labels=input_ids).loss
    assert torch.allclose(actual, expected, rtol=1e-5)


def test_host_runs_the_filled_window_and_matches_the_static_shapes(models, monkeypatch):
    """The default host backend drops the empty cache slots; the static-shape run (what the device
    and calibration see) gives the same logits, and the trimmed calls really are shorter."""
    from edge_llama.generation import EdgeRunner, TorchGraphBackend

    _, edge = models
    torch.manual_seed(3)
    prompt, follow_up = torch.randint(3, 160, (20,)), torch.randint(3, 160, (5,))
    original, widths = edge.graph_forward, []

    def recording(*args):
        widths[-1].append(args[1].shape[-1])  # the mask's width: past slots + AR
        return original(*args)

    monkeypatch.setattr(edge, "graph_forward", recording)
    results = []
    for full_window in (False, True):
        widths.append([])
        runner = EdgeRunner(TorchGraphBackend(edge, full_window=full_window))
        window = runner.new_window()
        results.append(torch.cat([runner.process(prompt, window), runner.process(follow_up, window)]))
    trimmed, static = results
    assert ((trimmed - static).abs().max() / static.abs().max()).item() <= 1e-5
    assert torch.equal(trimmed.argmax(-1), static.argmax(-1))
    cl = edge.config.context_length
    assert all(width == cl for width in widths[1]) and max(widths[0]) < cl

"""Where checkpoints come from, and the clear errors when they are not what we need."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config

from edge_llama import (
    CheckpointNotFoundError,
    EdgeLlamaConfig,
    EdgeLlamaConfigError,
    EdgeLlamaForCausalLM,
    TokenizerNotFoundError,
    UnsupportedCheckpointError,
    cache_dir,
    load_tokenizer,
    resolve_checkpoint,
)
from edge_llama.presets import known_aliases

from .conftest import tiny_llama


@pytest.fixture
def llama_folder(tmp_path):
    tiny_llama().save_pretrained(tmp_path / "llama")
    return tmp_path / "llama"


def test_non_llama_checkpoint_is_refused(tmp_path):
    GPT2Config(n_layer=1, n_embd=32, n_head=2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(UnsupportedCheckpointError, match=r"'gpt2' model.*Llama-architecture"):
        EdgeLlamaForCausalLM.from_pretrained(tmp_path / "gpt2")


@pytest.mark.parametrize("ar_lengths, context_length", [([64, 1], 64), ([128, 1], 100), ([0], 64)])
def test_ar_must_be_shorter_than_context(ar_lengths, context_length, llama_folder):
    with pytest.raises(EdgeLlamaConfigError, match="1 <= AR < context_length"):
        EdgeLlamaConfig(context_length=context_length, ar_lengths=ar_lengths)
    with pytest.raises(EdgeLlamaConfigError, match=f"context_length={context_length}"):
        EdgeLlamaForCausalLM.from_pretrained(llama_folder, context_length=context_length, ar_lengths=ar_lengths)


def test_missing_tokenizer_is_named(llama_folder):
    with pytest.raises(TokenizerNotFoundError, match=r"no tokenizer in .*llama.*tokenizer.json"):
        load_tokenizer(llama_folder)


def test_unknown_alias_lists_the_known_ones():
    with pytest.raises(CheckpointNotFoundError) as error:
        EdgeLlamaForCausalLM.from_pretrained("no-such-model-alias")
    message = str(error.value)
    assert "no-such-model-alias" in message and "DEFAULT" in message and "local folder" in message


def test_missing_folder_and_gguf_are_named(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="checkpoint folder not found"):
        resolve_checkpoint(str(tmp_path / "nowhere" / "model"))
    with pytest.raises(CheckpointNotFoundError, match="GGUF file not found"):
        resolve_checkpoint(str(tmp_path / "model.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointNotFoundError, match="no config.json"):
        resolve_checkpoint(str(tmp_path / "empty"))


def test_unexpected_keyword_is_refused(llama_folder):
    with pytest.raises(TypeError, match="context_lenght"):
        EdgeLlamaForCausalLM.from_pretrained(llama_folder, context_lenght=128)


def test_aliases_come_from_configs():
    assert {"DEFAULT", "DEFAULT_UNQUANTIZED", "smollm2-135m-instruct"} <= set(known_aliases())


def test_cache_dir_can_be_overridden(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_LLAMA_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"


@pytest.mark.slow
def test_default_alias_converts_once(monkeypatch, tmp_path):
    """The GGUF of the embedded model is converted on first use only; the .gguf path shares the cache."""
    import edge_llama.checkpoints as checkpoints

    monkeypatch.setenv("EDGE_LLAMA_CACHE", str(tmp_path / "cache"))
    first = Path(resolve_checkpoint("DEFAULT"))
    assert first.parent == tmp_path / "cache" / "models"
    assert (first / "model.safetensors").is_file() and (first / "tokenizer.json").is_file()

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("the GGUF was converted again")

    monkeypatch.setattr(checkpoints.LlamaForCausalLM, "from_pretrained", no_second_conversion)
    started = time.perf_counter()
    assert Path(resolve_checkpoint("smollm2-135m-instruct")) == first
    assert time.perf_counter() - started < 1.0
    source = json.loads((first / "edge_llama_source.json").read_text())
    assert Path(resolve_checkpoint(source["gguf_file"])) == first
    tokenizer = load_tokenizer("DEFAULT")
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"


def test_hub_id_loads_from_the_offline_hf_cache(tmp_path, monkeypatch):
    """A hub id resolves through huggingface_hub's cache layout without any network."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--edge-tests--tiny-llama"
    snapshot = repo / "snapshots" / commit
    reference = tiny_llama()
    reference.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    edge = EdgeLlamaForCausalLM.from_pretrained(
        "edge-tests/tiny-llama", cache_dir=str(tmp_path / "hub"), context_length=64, ar_lengths=[16, 1]
    )
    state = edge.state_dict()
    assert all(torch.equal(state[key], tensor) for key, tensor in reference.state_dict().items())


def test_model_presets_carry_their_split_and_context_defaults():
    from edge_llama.presets import find_preset

    assert find_preset("llama-2-7b-chat").defaults == {"context_length": 1024, "num_parts": 4}
    assert find_preset("llama-3-8b-instruct").defaults["num_parts"] == 5
    assert find_preset("llama-3.2-3b-instruct").defaults["num_parts"] == 3
    assert resolve_checkpoint("llama-3.2-3b-instruct") == "meta-llama/Llama-3.2-3B-Instruct"  # a hub id


def test_default_model_loads_with_its_preset_parts_unless_overridden():
    from edge_llama import EdgeLlamaForCausalLM

    assert EdgeLlamaForCausalLM.from_pretrained("DEFAULT", context_length=256).config.num_parts == 2
    assert EdgeLlamaForCausalLM.from_pretrained("DEFAULT", context_length=256, num_parts=4).config.num_parts == 4


def test_impossible_num_parts_is_refused():
    from edge_llama import EdgeLlamaConfig, EdgeLlamaConfigError

    with pytest.raises(EdgeLlamaConfigError, match="num_parts must be from 2 to num_hidden_layers \\+ 1 = 3"):
        EdgeLlamaConfig(num_hidden_layers=2, num_parts=5)

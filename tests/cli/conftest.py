"""Checkpoint folders the command tests share."""

from __future__ import annotations

import pytest

from edge_llama.cli.main import main

from ..conftest import tiny_llama


@pytest.fixture(scope="package")
def checkpoints(tmp_path_factory, default_tokenizer):
    """A float Llama folder with SmolLM2's tokenizer, and its w4-rtn quantized folder."""
    folder = tmp_path_factory.mktemp("checkpoints")
    model = tiny_llama(vocab_size=49152, hidden_size=64, intermediate_size=112)
    model.save_pretrained(folder / "float")
    default_tokenizer.save_pretrained(folder / "float")
    assert main(["quantize", "--checkpoint", str(folder / "float"), "--recipe", "w4-rtn", "--context-length", "256", "-q",
                 "-o", str(folder / "w4-rtn")]) == 0
    return folder

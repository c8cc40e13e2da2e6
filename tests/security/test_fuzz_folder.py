"""Random damage to a saved quantized folder: every changed byte of the weights, encodings or graphs
gives an `EdgeLlamaError` (a structural check naming the tensor, or the sha256 recorded at save time),
never another exception and never a model that loads."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edge_llama import EdgeLlamaError, EdgeLlamaForCausalLM

from .conftest import fast

FILES = ["model.data", "model.encodings", "model_ar1_cl64.onnx", "model_ar16_cl64.onnx"]


@pytest.fixture(scope="module")
def victim(saved_quantized, tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-folder") / "victim"


@fast(15)
@given(st.sampled_from(FILES), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=3), st.booleans())
def test_damaged_files_never_load(saved_quantized, victim, file_name, flips, truncate):
    shutil.rmtree(victim, ignore_errors=True)
    shutil.copytree(saved_quantized, victim)
    path = victim / file_name
    content = bytearray(path.read_bytes())
    for where, mask in flips:
        content[int(where * len(content))] ^= mask
    if truncate:
        del content[int(flips[0][0] * len(content)) :]
    assume(bytes(content) != path.read_bytes())  # two flips of one byte can cancel out
    path.write_bytes(bytes(content))
    with pytest.raises(EdgeLlamaError):
        EdgeLlamaForCausalLM.from_pretrained(victim)

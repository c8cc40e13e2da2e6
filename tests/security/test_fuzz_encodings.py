"""Property-based tests of the AIMET encodings reader/writer.

- Round trip: any valid `Encodings` written and read back is equal, field for field.
- Corruption: random bytes, random JSON documents, and random edits of a valid file (bytes flipped,
  inserted, deleted, truncated; keys dropped or renamed; values replaced) either raise
  `EncodingsError` or read back *faithfully*: every key and value of the document is in the result,
  nothing is ignored, and the only additions are the documented defaults. Never another exception.

A changed byte that still parses (a digit of a scale) is not the reader's to catch: the folder's
sha256 in `config.json` catches it (`test_untrusted_folders.py`).
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_llama.quantization.encodings import ENC_TYPES, Encodings, EncodingsError, TensorEncoding

from .conftest import fast

positive_floats = st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False)
names = st.text(min_size=1, max_size=24)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@st.composite
def tensor_encodings(draw, name=None) -> TensorEncoding:
    if draw(st.booleans()) and draw(st.booleans()):  # a float tensor: AIMET writes no grid for it
        return TensorEncoding.floating(name if name is not None else draw(names), draw(st.sampled_from([16, 32])))
    enc_type = draw(st.sampled_from(ENC_TYPES))
    dtype = "INT"
    bw = draw(st.integers(3 if enc_type == "LPBQ" else 2, 32))
    channels = 1 if enc_type == "PER_TENSOR" else draw(st.integers(1, 6))
    scale = draw(st.lists(positive_floats, min_size=channels, max_size=channels))
    offset = draw(st.lists(st.integers(-(2**40), 2**40), min_size=channels, max_size=channels))
    block_size = compressed_bw = per_block = None
    if enc_type in ("PER_BLOCK", "LPBQ"):
        block_size = draw(st.integers(1, 4096))
    if enc_type == "LPBQ":
        compressed_bw = draw(st.integers(2, bw - 1))
        blocks = channels * draw(st.integers(1, 4))
        per_block = draw(st.lists(st.integers(0, 2 ** (bw - compressed_bw)), min_size=blocks, max_size=blocks))
    return TensorEncoding(
        name if name is not None else draw(names), enc_type, bw, draw(st.booleans()), scale, offset, dtype,
        block_size, compressed_bw, per_block,
    )


@st.composite
def encodings_objects(draw) -> Encodings:
    def section():
        keys = draw(st.lists(names, unique=True, max_size=5))
        return {key: draw(tensor_encodings(name=key)) for key in keys}

    return Encodings(
        activations=section(),
        params=section(),
        excluded_layers=draw(st.lists(st.text(max_size=16), max_size=3)),
        quantizer_args=draw(st.dictionaries(st.text(max_size=12), json_scalars | st.lists(json_scalars, max_size=3), max_size=4)),
    )


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "model.encodings"


def _read_bytes(path, content: bytes):
    path.write_bytes(content)
    return Encodings.read(path)


@fast(100)
@given(encodings_objects())
def test_round_trip_preserves_every_field(path, encodings):
    encodings.write(path)
    again = Encodings.read(path)
    assert again == encodings
    assert again.to_json() == encodings.to_json()  # same order, too


def _filled_defaults(document: dict) -> dict:
    """What a faithful reader returns for `document`: the document plus the documented defaults."""
    expected = {"excluded_layers": [], "quantizer_args": {}, **document}
    for key in ("activation_encodings", "param_encodings"):
        # A FLOAT entry is written in AIMET's form (no is_sym, scale or offset); the reader refuses one with a grid.
        expected[key] = [entry if entry.get("dtype") == "FLOAT" else {"scale": [], "offset": [], **entry} for entry in document[key]]
    return expected


def _same(a, b) -> bool:
    """Equal as JSON values: numbers by value (1 == 1.0), but booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _check_faithful_or_error(path, content: bytes) -> str:
    try:
        result = _read_bytes(path, content)
    except EncodingsError:
        return "error"
    document = json.loads(content)
    if "version" not in document:
        return "legacy"  # the 0.6.1 form has its own, tolerant shape
    assert _same(result.to_json(), _filled_defaults(document)), f"silently changed on read: {content[:300]!r}"
    return "faithful"


@fast(200)
@given(st.binary(max_size=200))
def test_random_bytes_raise_or_read_faithfully(path, content):
    _check_faithful_or_error(path, content)


@fast(200)
@given(st.fixed_dictionaries({"version": st.just("1.0.0")}, optional={
    "activation_encodings": st.lists(json_values, max_size=3), "param_encodings": st.lists(json_values, max_size=3),
    "excluded_layers": json_values, "quantizer_args": json_values}) | json_values)
def test_random_documents_raise_or_read_faithfully(path, document):
    _check_faithful_or_error(path, json.dumps(document).encode())


def _paths(value, prefix=()):
    """Every (path, value) of a JSON document, the root included."""
    yield prefix, value
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


@st.composite
def edited_documents(draw) -> bytes:
    """A valid file with one structural edit: a key dropped or renamed, or a value replaced."""
    document = draw(encodings_objects()).to_json()
    path, _ = draw(st.sampled_from([p for p in _paths(document) if p[0]]))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    action = draw(st.sampled_from(["drop", "rename", "replace"] if isinstance(parent, dict) else ["drop", "replace"]))
    if action == "drop":
        del parent[key]
    elif action == "rename":
        parent[key + draw(st.text(min_size=1, max_size=3))] = parent.pop(key)
    else:
        parent[key] = draw(json_values)
    return json.dumps(document, indent=1).encode()


@fast(150)
@given(edited_documents())
def test_structural_edits_raise_or_read_faithfully(path, content):
    _check_faithful_or_error(path, content)


@st.composite
def damaged_bytes(draw) -> bytes:
    """A valid file with bytes flipped, inserted, deleted, or cut off."""
    content = bytearray(json.dumps(draw(encodings_objects()).to_json(), indent=1).encode())
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, max(0, len(content) - 1)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and content:
            content[where] ^= draw(st.integers(1, 255))
        elif action == "insert":
            content[where:where] = draw(st.binary(min_size=1, max_size=4))
        elif action == "delete":
            del content[where : where + draw(st.integers(1, 8))]
        else:
            del content[where:]
    return bytes(content)


@fast(150)
@given(damaged_bytes())
def test_damaged_bytes_raise_or_read_faithfully(path, content):
    _check_faithful_or_error(path, content)

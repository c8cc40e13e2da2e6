"""What the loader checks before it trusts a file of a checkpoint folder or hub repo.

- No pickles: weights come from safetensors, `model.data` (raw bytes) and ONNX protobufs only.
- Every file read stays inside the folder: no absolute names, no `..`, no symlink that resolves
  outside it (a hub cache snapshot may link into its own repo's `blobs/`, as the hub client does).
- JSON files are bounded (size, nesting depth), strict (no NaN/Infinity, no duplicate keys) and the
  config fields the loader relies on have the right types and sane ranges.
- `model.data` and `model.encodings` match the sha256 recorded in `config.json` when they were saved.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointFileError

MAX_JSON_BYTES = 64 * 1024**2  # tokenizer.json of large-vocabulary models is ~30 MB; configs are KBs
MAX_JSON_DEPTH = 64
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

_POSITIVE_INTS = {  # config field → largest sane value (generous: the largest Llamas are far below)
    "vocab_size": 2**24,
    "hidden_size": 2**20,
    "intermediate_size": 2**22,
    "num_hidden_layers": 4096,
    "num_attention_heads": 4096,
    "num_key_value_heads": 4096,
    "head_dim": 2**16,
    "max_position_embeddings": 2**26,
    "context_length": 2**24,
}
_NUMBERS = ("rms_norm_eps", "rope_theta", "attention_mask_value", "initializer_range")
_BOOLS = ("tie_word_embeddings", "use_split_head_attention", "use_conv_projections", "attention_bias", "mlp_bias")
_OBJECTS = ("rope_scaling", "rope_parameters", "quantization_config", "edge_llama_export")
_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def allowed_roots(folder: Path) -> list[Path]:
    """Where the files of `folder` may resolve to: the folder, and a hub snapshot's `blobs/`."""
    folder = folder.resolve()
    roots = [folder]
    if folder.parent.name == "snapshots":
        roots.append(folder.parent.parent / "blobs")
    return roots


def contained_file(folder: str | os.PathLike, name: str, what: str = "file") -> Path:
    """`folder / name`, refused if `name` or a symlink on the way leads outside `folder`."""
    folder = Path(folder)
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise CheckpointFileError(
            f"{folder}: the {what} {name!r} is not a plain name inside the folder (absolute or with '..'); refusing to read it."
        )
    path = folder / relative
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in allowed_roots(folder)):
        raise CheckpointFileError(
            f"{path}: the {what} is a link to {resolved}, outside the checkpoint folder; refusing to read it. "
            "Copy the real file into the folder."
        )
    return path


def read_json(path: str | os.PathLike, max_bytes: int | None = None, max_depth: int | None = None, error=CheckpointFileError) -> Any:
    """Parses a JSON file strictly and within bounds (default `MAX_JSON_BYTES`, `MAX_JSON_DEPTH`);
    problems raise `error` naming the file."""
    path = Path(path)
    max_bytes = MAX_JSON_BYTES if max_bytes is None else max_bytes
    max_depth = MAX_JSON_DEPTH if max_depth is None else max_depth
    if not path.is_file():
        raise error(f"{path} is missing (or not a file)")
    size = path.stat().st_size
    if size > max_bytes:
        raise error(f"{path}: {size} bytes is larger than the {max_bytes}-byte limit for this file; it is not a file edge-llama wrote.")
    try:
        data = json.loads(path.read_bytes(), parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except RecursionError as failure:
        raise error(f"{path}: JSON nested too deeply to read") from failure
    except (ValueError, UnicodeDecodeError) as failure:  # JSONDecodeError, the checks above, oversized integers
        raise error(f"{path}: not valid JSON ({failure})") from failure
    depth = _depth(data, max_depth)
    if depth > max_depth:
        raise error(f"{path}: JSON nested more than {max_depth} levels deep; expected a flat configuration file")
    return data


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice in one object (which one counts is ambiguous)")
        result[key] = value
    return result


def _depth(data: Any, limit: int) -> int:
    """Nesting depth of `data`, computed without recursion; stops counting just past `limit`."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            if depth > limit:
                return depth
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return deepest


def check_config(data: Any, path: str | os.PathLike) -> dict:
    """Checks the types and ranges of the `config.json` fields the loader relies on; returns `data`."""
    if not isinstance(data, dict):
        raise CheckpointFileError(f"{path}: expected a JSON object at the top, found {type(data).__name__}")
    model_type = data.get("model_type")
    if not isinstance(model_type, str):
        raise CheckpointFileError(f"{path}: model_type must be a string (e.g. \"llama\"), found {model_type!r}")
    for key, largest in _POSITIVE_INTS.items():
        if key in data and data[key] is not None and not _is_int(data[key], 1, largest):
            raise CheckpointFileError(f"{path}: {key} must be an integer in [1, {largest}], found {data[key]!r}")
    if "ar_lengths" in data and not (
        isinstance(data["ar_lengths"], list) and data["ar_lengths"] and all(_is_int(v, 1, 2**24) for v in data["ar_lengths"])
    ):
        raise CheckpointFileError(f"{path}: ar_lengths must be a non-empty list of positive integers, found {data['ar_lengths']!r}")
    if data.get("num_parts") is not None and not _is_int(data["num_parts"], 1, 4096):
        raise CheckpointFileError(f"{path}: num_parts must be a positive integer or null, found {data['num_parts']!r}")
    for key in _NUMBERS:
        value = data.get(key)
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
            raise CheckpointFileError(f"{path}: {key} must be a number, found {value!r}")
    for key in _BOOLS:
        if key in data and not isinstance(data[key], bool):
            raise CheckpointFileError(f"{path}: {key} must be true or false, found {data[key]!r}")
    for key in _OBJECTS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise CheckpointFileError(f"{path}: {key} must be an object or null, found {type(data[key]).__name__}")
    for key in _TOKEN_IDS:
        value = data.get(key)
        ids = value if isinstance(value, list) else [value]
        if value is not None and not all(_is_int(v, 0, 2**31) for v in ids):
            raise CheckpointFileError(f"{path}: {key} must be a token id (or a list of them), found {value!r}")
    return data


def _is_int(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def refuse_pickled_weights(folder: str | os.PathLike) -> None:
    """Raises if `folder` holds only pickled weights (loading them could run code)."""
    folder = Path(folder)
    if any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if pickled:
        raise CheckpointFileError(
            f"{folder} has no safetensors weights, only pickled ones ({', '.join(pickled[:3])}); edge-llama never "
            "unpickles (it can run code). Convert them once in a trusted environment: "
            "LlamaForCausalLM.from_pretrained(folder).save_pretrained(new_folder) writes safetensors."
        )


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: Any, config_path: Path, error=CheckpointFileError) -> None:
    """Checks `path` against the sha256 that `config_path` recorded for it."""
    if not (isinstance(expected, str) and len(expected) == 64):
        raise error(f"{config_path}: quantization_config.checksums[{path.name!r}] must be a sha256 hex string, found {expected!r}")
    found = file_sha256(path)
    if found != expected:
        raise error(
            f"{path}: sha256 {found[:16]}… differs from {expected[:16]}… recorded in {config_path.name} at save time; "
            "the file was changed or corrupted. Download or copy the folder again (if you edited it on purpose, "
            "delete quantization_config.checksums from config.json)."
        )

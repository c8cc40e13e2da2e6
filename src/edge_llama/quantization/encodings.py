"""AIMET encodings, schema 1.0.0 — the form QNN's converters and Qualcomm AI Hub read.

```json
{"version": "1.0.0",
 "activation_encodings": [{"name": "past_key_0_in", "enc_type": "PER_TENSOR", "dtype": "INT", "bw": 8,
                           "is_sym": true, "scale": [0.01], "offset": [-128]}],
 "param_encodings": [{"name": "lm_head.weight", "enc_type": "PER_CHANNEL", ...},
                     {"name": "...", "enc_type": "PER_BLOCK", "block_size": 64, ...},
                     {"name": "...", "enc_type": "LPBQ", "block_size": 64, "bw": 8, "compressed_bw": 4,
                      "per_block_int_scale": [...], ...}],
 "excluded_layers": [], "quantizer_args": {...}}
```

Offsets follow AIMET: a quantized value `q` means `scale * (q + offset)`; for signed symmetric
encodings the offset is `-2**(bw-1)` shifted like AIMET's exporter does. The legacy 0.6.1 dict form
is read too. Every problem is reported with the file and the tensor name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .._io import write_text_atomic
from ..errors import EdgeLlamaError
from ..serialization.safety import read_json

VERSION = "1.0.0"
_REQUIRED_ENTRY_KEYS = ("name", "enc_type", "dtype", "bw", "is_sym")
_BLOCK_KEYS = {"block_size": ("PER_BLOCK", "LPBQ"), "compressed_bw": ("LPBQ",), "per_block_int_scale": ("LPBQ",)}
_ENTRY_KEYS = (*_REQUIRED_ENTRY_KEYS, "scale", "offset", *_BLOCK_KEYS)
_TOP_LEVEL_KEYS = ("version", "activation_encodings", "param_encodings", "excluded_layers", "quantizer_args")
ENC_TYPES = ("PER_TENSOR", "PER_CHANNEL", "PER_BLOCK", "LPBQ")
MAX_FILE_BYTES = 2 * 1024**3  # LPBQ block scales of an 8B model are ~1 GB of JSON
MAX_DEPTH = 8  # the deepest 1.0.0 path: root, a list, an entry, its scale list (quantizer_args may nest a little)


class EncodingsError(EdgeLlamaError, ValueError):
    """An encodings file is malformed or does not fit the model it comes with."""


INT4_TO_INT8 = 2 ** (8 - 4)  # int4 codes × 16 fill the int8 range: the same grid points, 16× finer steps


@dataclass
class TensorEncoding:
    """The quantization of one tensor."""

    name: str
    enc_type: str
    bw: int
    is_sym: bool
    scale: list[float]
    offset: list[int]
    dtype: str = "INT"
    block_size: int | None = None
    compressed_bw: int | None = None
    per_block_int_scale: list[int] | None = None

    @classmethod
    def floating(cls, name: str, bw: int = 16) -> TensorEncoding:
        """A tensor kept in floating point of `bw` bits (AIMET writes these with no scale or offset)."""
        return cls(name, "PER_TENSOR", bw, False, [], [], dtype="FLOAT")

    @property
    def is_float(self) -> bool:
        return self.dtype == "FLOAT"

    @property
    def stored_bits(self) -> int:
        """Bits per stored value: `compressed_bw` for LPBQ weights (their `bw` is the width the codes
        expand to with the integer block scales), `bw` for every other encoding."""
        return self.compressed_bw if self.enc_type == "LPBQ" else self.bw

    def check_fits(self, shape: tuple[int, ...], source: str = "model.encodings") -> None:
        """Checks the number of scales against a weight of `shape` (out, in, …)."""
        channels, width = shape[0], (shape[1] if len(shape) > 1 else 1)
        if self.enc_type == "PER_TENSOR":
            return
        where = f"{source}: {self.name}"
        if self.enc_type in ("PER_BLOCK", "LPBQ") and width % self.block_size:
            raise EncodingsError(f"{where}: block_size {self.block_size} does not divide the {width} input channels")
        blocks = channels * (width // self.block_size) if self.block_size else channels
        scales = channels if self.enc_type in ("PER_CHANNEL", "LPBQ") else blocks
        if len(self.scale) != scales:
            raise EncodingsError(f"{where} has {channels} output channels but its encoding has {len(self.scale)} scales (expected {scales})")
        if self.enc_type == "LPBQ" and len(self.per_block_int_scale) != blocks:
            raise EncodingsError(f"{where}: {len(self.per_block_int_scale)} block scales, expected {blocks}")

    def widened_to_int8(self) -> TensorEncoding:
        """A 4-bit per-tensor/per-channel weight encoding as 8-bit with scales / 16 and offsets × 16: every
        int4 grid point stays a grid point (`export(..., int4_as_int8=True)`); any other encoding as it is."""
        if self.is_float or self.bw != 4 or self.enc_type not in ("PER_TENSOR", "PER_CHANNEL"):
            return self
        return dataclasses.replace(self, bw=8, scale=[s / INT4_TO_INT8 for s in self.scale], offset=[o * INT4_TO_INT8 for o in self.offset])

    def to_json(self) -> dict:
        if self.is_float:
            return {"name": self.name, "enc_type": self.enc_type, "dtype": self.dtype, "bw": self.bw}
        entry = {
            "name": self.name,
            "enc_type": self.enc_type,
            "dtype": self.dtype,
            "bw": self.bw,
            "is_sym": self.is_sym,
            "scale": [float(s) for s in self.scale],
            "offset": [int(o) for o in self.offset],
        }
        if self.block_size is not None:
            entry["block_size"] = self.block_size
        if self.compressed_bw is not None:
            entry["compressed_bw"] = self.compressed_bw
        if self.per_block_int_scale is not None:
            entry["per_block_int_scale"] = [int(s) for s in self.per_block_int_scale]
        return entry

    @classmethod
    def from_json(cls, entry, where: str) -> TensorEncoding:
        if not isinstance(entry, dict):
            raise EncodingsError(f"{where}: expected an object, got {type(entry).__name__}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise EncodingsError(f"{where}: 'name' must be a non-empty string")
        where = f"{where} ({name})"
        if entry.get("dtype") == "FLOAT":
            return cls._float_from_json(entry, where)
        missing = [key for key in _REQUIRED_ENTRY_KEYS if key not in entry]
        if missing:
            raise EncodingsError(f"{where}: missing {missing}; every 1.0.0 entry has {list(_REQUIRED_ENTRY_KEYS)}")
        unknown = sorted(set(entry) - set(_ENTRY_KEYS))
        if unknown:  # a misspelt optional key would otherwise vanish silently
            raise EncodingsError(f"{where}: unknown key(s) {unknown}; an entry has some of {list(_ENTRY_KEYS)}")
        enc_type, dtype = entry.get("enc_type"), entry.get("dtype")
        if enc_type not in ENC_TYPES:
            raise EncodingsError(f"{where}: enc_type must be one of {list(ENC_TYPES)}, got {enc_type!r}")
        misplaced = [key for key, types in _BLOCK_KEYS.items() if key in entry and enc_type not in types]
        if misplaced:
            raise EncodingsError(f"{where}: {misplaced} do not apply to a {enc_type} encoding")
        if dtype not in ("INT", "FLOAT"):
            raise EncodingsError(f"{where}: dtype must be INT or FLOAT, got {dtype!r}")
        bw = _int(entry.get("bw"), f"{where}: bw", low=2, high=32)
        is_sym = entry.get("is_sym")
        if not isinstance(is_sym, bool):
            raise EncodingsError(f"{where}: is_sym must be true or false, got {is_sym!r}")
        scale = _number_list(entry.get("scale", []), f"{where}: scale", positive=True)
        offset = [_int(o, f"{where}: offset") for o in _list(entry.get("offset", []), f"{where}: offset")]
        if not scale:
            raise EncodingsError(f"{where}: no scale; every encoding has at least one")
        if dtype == "INT" and len(offset) != len(scale):
            raise EncodingsError(f"{where}: scale and offset need the same, non-zero length (got {len(scale)} and {len(offset)})")
        if enc_type == "PER_TENSOR" and len(scale) != 1:
            raise EncodingsError(f"{where}: a PER_TENSOR encoding has one scale, got {len(scale)}")
        block_size = compressed_bw = per_block = None
        if enc_type in ("PER_BLOCK", "LPBQ"):
            block_size = _int(entry.get("block_size"), f"{where}: block_size", low=1)
        if enc_type == "LPBQ":
            compressed_bw = _int(entry.get("compressed_bw"), f"{where}: compressed_bw", low=2, high=bw - 1)
            per_block = [
                _int(s, f"{where}: per_block_int_scale", low=0, high=2 ** (bw - compressed_bw))
                for s in _list(entry.get("per_block_int_scale"), f"{where}: per_block_int_scale")
            ]
            if not per_block or len(per_block) % len(scale):
                raise EncodingsError(
                    f"{where}: per_block_int_scale must hold a whole number of blocks per channel "
                    f"({len(per_block)} values for {len(scale)} channels)"
                )
        return cls(name, enc_type, bw, is_sym, scale, offset, dtype, block_size, compressed_bw, per_block)

    @classmethod
    def _float_from_json(cls, entry: dict, where: str) -> TensorEncoding:
        """AIMET's form of a float tensor: `{name, enc_type: PER_TENSOR, dtype: FLOAT, bw: 16|32}`."""
        if "scale" in entry or "offset" in entry:
            raise EncodingsError(f"{where}: a FLOAT encoding has no scale or offset; drop them or write dtype INT")
        unknown = sorted(set(entry) - {"name", "enc_type", "dtype", "bw"})
        if unknown:
            raise EncodingsError(f"{where}: unknown key(s) {unknown} for a FLOAT encoding (it has name, enc_type, dtype, bw)")
        if entry.get("enc_type") != "PER_TENSOR":
            raise EncodingsError(f"{where}: a FLOAT encoding is PER_TENSOR, got {entry.get('enc_type')!r}")
        bw = entry.get("bw")
        if bw not in (16, 32) or isinstance(bw, bool):
            raise EncodingsError(f"{where}: a FLOAT encoding has bw 16 (fp16) or 32, got {bw!r}")
        return cls.floating(entry["name"], bw)


@dataclass
class Encodings:
    """All encodings of a model, by tensor name."""

    activations: dict[str, TensorEncoding] = field(default_factory=dict)
    params: dict[str, TensorEncoding] = field(default_factory=dict)
    excluded_layers: list[str] = field(default_factory=list)
    quantizer_args: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "version": VERSION,
            "activation_encodings": [e.to_json() for e in self.activations.values()],
            "param_encodings": [e.to_json() for e in self.params.values()],
            "excluded_layers": list(self.excluded_layers),
            "quantizer_args": dict(self.quantizer_args),
        }

    @classmethod
    def from_json(cls, data, source: str = "model.encodings") -> Encodings:
        if not isinstance(data, dict):
            raise EncodingsError(f"{source}: expected a JSON object at the top, got {type(data).__name__}")
        version = data.get("version")
        if version is None and isinstance(data.get("param_encodings"), dict):
            return cls._from_legacy(data, source)
        if version != VERSION:
            raise EncodingsError(f"{source}: unsupported encodings version {version!r}; expected {VERSION!r} (or legacy 0.6.1)")
        for key in ("activation_encodings", "param_encodings"):
            if key not in data:
                raise EncodingsError(f"{source}: missing {key!r}; a 1.0.0 encodings file lists activation and param encodings")
        unknown = sorted(set(data) - set(_TOP_LEVEL_KEYS))
        if unknown:
            raise EncodingsError(f"{source}: unknown top-level key(s) {unknown}; a 1.0.0 file has {list(_TOP_LEVEL_KEYS)}")
        excluded = _list(data.get("excluded_layers", []), f"{source}: excluded_layers")
        if not all(isinstance(name, str) for name in excluded):
            raise EncodingsError(f"{source}: excluded_layers must be a list of layer names (strings)")
        quantizer_args = data.get("quantizer_args", {})
        if not isinstance(quantizer_args, dict):
            raise EncodingsError(f"{source}: quantizer_args must be an object, got {type(quantizer_args).__name__}")
        encodings = cls(excluded_layers=list(excluded), quantizer_args=dict(quantizer_args))
        for key, target in (("activation_encodings", encodings.activations), ("param_encodings", encodings.params)):
            for index, entry in enumerate(_list(data.get(key, []), f"{source}: {key}")):
                encoding = TensorEncoding.from_json(entry, f"{source}: {key}[{index}]")
                if encoding.name in target:
                    raise EncodingsError(f"{source}: {key} lists {encoding.name!r} twice")
                target[encoding.name] = encoding
        return encodings

    @classmethod
    def _from_legacy(cls, data, source: str) -> Encodings:
        """The 0.6.1 form: `{name: [{bitwidth, is_symmetric, scale, offset, min, max, dtype}, …]}`."""
        encodings = cls()
        for key, target in (("activation_encodings", encodings.activations), ("param_encodings", encodings.params)):
            section = data.get(key, {})
            if not isinstance(section, dict):
                raise EncodingsError(f"{source}: legacy {key} must be an object of tensor name to list")
            for name, channels in section.items():
                where = f"{source}: {key}[{name!r}]"
                channels = _list(channels, where)
                if not channels or not all(isinstance(c, dict) for c in channels):
                    raise EncodingsError(f"{where}: expected a non-empty list of objects")
                first = channels[0]
                if str(first.get("dtype", "int")).lower() == "float":
                    legacy_float = {"name": name, "enc_type": "PER_TENSOR", "dtype": "FLOAT", "bw": first.get("bitwidth")}
                    target[name] = TensorEncoding._float_from_json(legacy_float, where)
                    continue
                is_sym = str(first.get("is_symmetric", "False")).lower() == "true"
                target[name] = TensorEncoding.from_json(
                    {
                        "name": name,
                        "enc_type": "PER_TENSOR" if len(channels) == 1 else "PER_CHANNEL",
                        "dtype": str(first.get("dtype", "int")).upper(),
                        "bw": first.get("bitwidth"),
                        "is_sym": is_sym,
                        "scale": [c.get("scale") for c in channels],
                        "offset": [c.get("offset") for c in channels],
                    },
                    where,
                )
        return encodings

    def write(self, path: str | os.PathLike) -> None:
        """Writes the 1.0.0 JSON atomically (a temporary file renamed over `path`)."""
        write_text_atomic(path, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def read(cls, path: str | os.PathLike) -> Encodings:
        path = Path(path)
        if not path.is_file():
            raise EncodingsError(f"encodings file not found: {path}")
        data = read_json(path, max_bytes=MAX_FILE_BYTES, max_depth=MAX_DEPTH, error=EncodingsError)
        return cls.from_json(data, source=str(path))

    def check_params(self, expected: dict[str, tuple[int, ...]], source: str = "model.encodings") -> None:
        """Checks that the param encodings cover exactly `expected` (name → weight shape) and fit it."""
        missing = sorted(set(expected) - set(self.params))
        extra = sorted(set(self.params) - set(expected))
        if missing:
            raise EncodingsError(f"{source}: no encoding for {len(missing)} quantized weight(s), e.g. {missing[:3]}")
        if extra:
            raise EncodingsError(f"{source}: encodings for {len(extra)} tensor(s) the model does not have, e.g. {extra[:3]}")
        for name, shape in expected.items():
            self.params[name].check_fits(shape, source)


def _list(value, where: str) -> list:
    if not isinstance(value, list):
        raise EncodingsError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _int(value, where: str, low: int | None = None, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise EncodingsError(f"{where}: expected an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise EncodingsError(f"{where}: {value} is outside [{low}, {high}]")
    return value


def _number_list(value, where: str, positive: bool = False) -> list[float]:
    numbers = []
    for item in _list(value, where):
        if not isinstance(item, (int, float)) or isinstance(item, bool) or not math.isfinite(item):
            raise EncodingsError(f"{where}: expected finite numbers, found {item!r}")
        if positive and item <= 0:
            raise EncodingsError(f"{where}: scales must be positive, found {item!r}")
        numbers.append(float(item))
    return numbers

"""Quantization recipes: data under `configs/quantization/*.yaml`, validated into small dataclasses.

A recipe says which engine quantizes (aimet, torchao, awq), for which target, with which layout of
the edge model, and how weights, activations, the KV cache and the embedding are quantized.
Per-module overrides match module names with shell-style patterns (`lm_head`,
`model.layers.*.mlp.down_proj`); the last matching override wins, and `weights: null` keeps a
module in float.
"""

from __future__ import annotations

import fnmatch
import math
import os
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from ..errors import EdgeLlamaError
from ..presets import configs_dir

ENGINES = ("rtn", "aimet", "torchao", "awq")
MAX_FILE_BYTES = 1024**2
MAX_VALUES = 100_000  # after YAML aliases are expanded: `&a [*b, *b, …]` chains grow exponentially
LAYOUT_SWITCHES = ("use_split_head_attention", "use_conv_projections")


class RecipeError(EdgeLlamaError, ValueError):
    """A recipe file is unknown, unreadable or has an invalid field."""


class Granularity(str, Enum):
    PER_TENSOR = "per-tensor"
    PER_CHANNEL = "per-channel"
    PER_GROUP = "per-group"  # groups of `group_size` input channels, one scale each (torchao, AWQ)
    PER_BLOCK = "per-block"  # AIMET blocks of `block_size` input channels
    LPBQ = "lpbq"  # AIMET low-power blocks: integer block scales under a per-channel float scale


class GroupFallback(str, Enum):
    SMALLER_GROUP = "smaller-group"  # largest multiple of 8 that divides the width and is <= group_size
    ERROR = "error"


SCALE_DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class WeightScheme:
    bits: int
    granularity: Granularity = Granularity.PER_CHANNEL
    symmetric: bool = True
    group_size: int | None = None
    block_size: int | None = None
    decompressed_bits: int | None = None
    group_fallback: GroupFallback = GroupFallback.SMALLER_GROUP
    scale_dtype: str = "float32"  # how the runtime stores each scale (XNNPACK's int4 groups: bfloat16)

    def __post_init__(self):
        _check_bits("bits", self.bits)
        if self.scale_dtype not in SCALE_DTYPES:
            raise ValueError(f"scale_dtype must be one of {', '.join(SCALE_DTYPES)}, got {self.scale_dtype!r}")
        if self.granularity is Granularity.PER_GROUP and not _positive(self.group_size):
            raise ValueError("per-group weights need a positive group_size")
        if self.granularity in (Granularity.PER_BLOCK, Granularity.LPBQ) and not _positive(self.block_size):
            raise ValueError(f"{self.granularity.value} weights need a positive block_size")
        if self.granularity is Granularity.LPBQ:
            if not self.symmetric:
                raise ValueError("lpbq weights are symmetric; set symmetric: true")
            if self.decompressed_bits is None or self.decompressed_bits <= self.bits:
                raise ValueError("lpbq weights need decompressed_bits larger than bits (e.g. 8 for int4)")

    @property
    def block(self) -> int | None:
        """Input channels per scale for group/block granularities, else None."""
        return self.group_size if self.granularity is Granularity.PER_GROUP else self.block_size

    def block_for(self, input_width: int, where: str = "") -> int | None:
        """The group/block size to use on a weight with `input_width` input channels."""
        wanted = self.block
        if wanted is None or input_width % wanted == 0:
            return wanted
        if self.group_fallback is GroupFallback.ERROR:
            raise RecipeError(
                f"{where or 'a weight'} has {input_width} input channels, not a multiple of the group size {wanted}; "
                "choose a group size that divides it or set group_fallback: smaller-group."
            )
        candidates = [size for size in range(8, wanted + 1, 8) if input_width % size == 0]
        if not candidates:
            raise RecipeError(f"{where or 'a weight'}: no group size <= {wanted} divides {input_width} input channels.")
        return max(candidates)


RESIDUAL_STREAMS = ("integer", "float16")


@dataclass(frozen=True)
class ActivationScheme:
    bits: int
    symmetric: bool = False
    dynamic: bool = False
    granularity: str = "per-tensor"  # per-tensor (static) or per-token (dynamic)
    # The decoder's residual adds (and so the RMSNorm inputs they feed): on the activation grid
    # ("integer") or rounded to fp16 ("float16", HTP v73+). Llamas carry massive activations in the
    # residual stream (|x| ≈ 25,000 on SmolLM2's first token from layer 11 on); one per-tensor 16-bit
    # grid over that range has steps of 0.4, as large as every other token's values.
    residual_stream: str = "integer"

    def __post_init__(self):
        _check_bits("bits", self.bits)
        if self.granularity not in ("per-tensor", "per-token"):
            raise ValueError(f"activation granularity must be per-tensor or per-token, got {self.granularity!r}")
        if self.residual_stream not in RESIDUAL_STREAMS:
            raise ValueError(f"residual_stream must be one of {', '.join(RESIDUAL_STREAMS)}, got {self.residual_stream!r}")


@dataclass(frozen=True)
class KVCacheScheme:
    bits: int = 8
    symmetric: bool = True
    tie_in_out: bool = True

    def __post_init__(self):
        _check_bits("bits", self.bits)


_UNSET = object()


@dataclass(frozen=True)
class Override:
    match: str
    weights: WeightScheme | None | object = _UNSET  # _UNSET: keep the recipe's; None: keep float

    def matches(self, module_name: str) -> bool:
        return fnmatch.fnmatchcase(module_name, self.match)


@dataclass(frozen=True)
class Recipe:
    name: str
    engine: str
    target: str
    weights: WeightScheme
    description: str = ""
    activations: ActivationScheme | None = None
    kv_cache: KVCacheScheme | None = None
    embeddings: WeightScheme | None = None
    layout: dict[str, bool] = field(default_factory=dict)
    overrides: tuple[Override, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    source: str = field(default="", compare=False)

    def weights_for(self, module_name: str) -> WeightScheme | None:
        """The weight scheme of the module called `module_name` (None: not quantized)."""
        scheme = self.weights
        for override in self.overrides:
            if override.matches(module_name) and override.weights is not _UNSET:
                scheme = override.weights
        return scheme

    def option(self, key: str, default=None):
        return self.options.get(key, default)

    def to_dict(self) -> dict:
        """A JSON-friendly description (stored in `config.json`'s `quantization_config`)."""
        return _plain(self)


def available_recipes() -> list[str]:
    return sorted(path.stem for path in (configs_dir() / "quantization").glob("*.yaml"))


def load_recipe(recipe: str | os.PathLike | Recipe) -> Recipe:
    """A recipe by name (`w4a16`, …), from a YAML file path, or passed through if already loaded."""
    if isinstance(recipe, Recipe):
        return recipe
    path = Path(recipe)
    if path.suffix not in (".yaml", ".yml"):
        path = configs_dir() / "quantization" / f"{recipe}.yaml"
        if not path.is_file():
            raise RecipeError(
                f"unknown recipe {str(recipe)!r}; known recipes: {', '.join(available_recipes())}, "
                "or pass the path of your own recipe .yaml file."
            )
    elif not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise RecipeError(f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES}-byte limit for a recipe")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as error:
        raise RecipeError(f"{path} is not valid YAML: {error}") from error
    return parse_recipe(data, source=str(path))


def parse_recipe(data: Any, source: str = "<recipe>") -> Recipe:
    """Validates a recipe mapping; every error names the file and the field."""
    mapping = _mapping(data, source)
    _no_unknown_keys(mapping, Recipe, source)
    _check_options(mapping.get("options"), f"{source}: options")
    try:
        engine = mapping.get("engine")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
        layout = _mapping(mapping.get("layout") or {}, f"{source}: layout")
        for key, value in layout.items():
            if key not in LAYOUT_SWITCHES or not isinstance(value, bool):
                raise ValueError(f"layout.{key}: expected one of {list(LAYOUT_SWITCHES)} set to true/false")
        overrides = []
        for index, item in enumerate(mapping.get("overrides") or []):
            where = f"{source}: overrides[{index}]"
            item = _mapping(item, where)
            _no_unknown_keys(item, Override, where)
            if not isinstance(item.get("match"), str):
                raise ValueError(f"overrides[{index}].match must be a module-name pattern string")
            weights = _scheme(WeightScheme, item["weights"], f"{where}.weights") if "weights" in item else _UNSET
            overrides.append(Override(match=item["match"], weights=weights))
        return Recipe(
            name=_required_str(mapping, "name"),
            engine=engine,
            target=_required_str(mapping, "target"),
            description=str(mapping.get("description", "")),
            weights=_scheme(WeightScheme, mapping.get("weights"), f"{source}: weights", required=True),
            activations=_scheme(ActivationScheme, mapping.get("activations"), f"{source}: activations"),
            kv_cache=_scheme(KVCacheScheme, mapping.get("kv_cache"), f"{source}: kv_cache"),
            embeddings=_scheme(WeightScheme, mapping.get("embeddings"), f"{source}: embeddings"),
            layout=dict(layout),
            overrides=tuple(overrides),
            options=dict(_mapping(mapping.get("options") or {}, f"{source}: options")),
            source=source,
        )
    except RecipeError:
        raise
    except (ValueError, TypeError) as error:
        raise RecipeError(f"{source}: {error}") from error


def _check_options(value, where: str) -> None:
    """Options must survive `config.json` unchanged: string keys, JSON values, finite numbers, and a
    bounded size once YAML aliases are expanded (`&a [*b, *b, …]` chains grow exponentially)."""
    count, stack = 0, [(value, where)]
    while stack:
        item, path = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise RecipeError(f"{where} holds more than {MAX_VALUES} values (YAML aliases expanded); a recipe's options are a few settings")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise RecipeError(f"{path}: option names must be strings, found {key!r}; quote it in the YAML")
                stack.append((child, f"{path}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            raise RecipeError(f"{path}: {item} cannot be stored in config.json; use a finite number")
        elif item is not None and not isinstance(item, (bool, int, float, str)):
            raise RecipeError(f"{path}: {type(item).__name__} values cannot be stored in config.json; use a string or number")


def _scheme(cls, data, where: str, required: bool = False):
    if data is None:
        if required:
            raise RecipeError(f"{where}: missing; a recipe must say how weights are quantized")
        return None
    mapping = _mapping(data, where)
    _no_unknown_keys(mapping, cls, where)
    values = dict(mapping)
    try:
        if "granularity" in values and cls is WeightScheme:
            values["granularity"] = Granularity(values["granularity"])
        if "group_fallback" in values:
            values["group_fallback"] = GroupFallback(values["group_fallback"])
        for f in fields(cls):
            if f.name in values and f.type in ("bool",) and not isinstance(values[f.name], bool):
                raise ValueError(f"{f.name} must be true or false, got {values[f.name]!r}")
        return cls(**values)
    except (ValueError, TypeError) as error:
        raise RecipeError(f"{where}: {error}") from error


def _check_bits(name: str, bits) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 32:
        raise ValueError(f"{name} must be an integer between 2 and 32, got {bits!r}")


def _positive(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _mapping(data, where: str) -> dict:
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a mapping, got {type(data).__name__}")
    return data


def _required_str(mapping: dict, key: str) -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _no_unknown_keys(mapping: dict, cls, where: str, ignore=()) -> None:
    known = {f.name for f in fields(cls)} - set(ignore)
    unknown = sorted(set(mapping) - known, key=repr)  # YAML keys may be of any type
    if unknown:
        raise RecipeError(f"{where}: unknown field(s) {unknown}; expected some of {sorted(known)}")


def _plain(value):
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value) if getattr(value, f.name) is not _UNSET}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value

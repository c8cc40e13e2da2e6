"""Model presets: data under `configs/models/*.yaml`, read by code."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml


def configs_dir() -> Path:
    """The `configs/` folder: inside the installed package, or at the top of a source checkout."""
    package_root = Path(__file__).resolve().parent
    for candidate in (package_root / "configs", package_root.parents[1] / "configs"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"edge_llama's configs/ folder is missing (looked in {package_root} and its checkout).")


@dataclass(frozen=True)
class ModelPreset:
    """A named model the library knows how to fetch, with its defaults."""

    name: str
    aliases: tuple[str, ...]
    source: dict
    base_model: str | None = None
    license: str | None = None
    defaults: dict = field(default_factory=dict)  # EdgeLlamaConfig settings: context_length, num_parts, …


@functools.cache
def model_presets() -> dict[str, ModelPreset]:
    """Every preset by its lower-cased aliases."""
    presets: dict[str, ModelPreset] = {}
    for path in sorted((configs_dir() / "models").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        preset = ModelPreset(
            name=data["name"],
            aliases=tuple(data.get("aliases", [data["name"]])),
            source=data["source"],
            base_model=data.get("base_model"),
            license=data.get("license"),
            defaults=dict(data.get("defaults") or {}),
        )
        for alias in preset.aliases:
            presets[alias.lower()] = preset
    return presets


def find_preset(name: str) -> ModelPreset | None:
    return model_presets().get(str(name).lower())


def known_aliases() -> list[str]:
    return sorted({alias for preset in model_presets().values() for alias in preset.aliases})


@dataclass(frozen=True)
class DevicePreset:
    """A device an export can target: the QNN SoC model and Hexagon (HTP) architecture it compiles for."""

    name: str
    aliases: tuple[str, ...]
    chipset: str
    soc_model: int
    htp_arch: str
    weight_sharing: bool = True
    fp16: bool = True
    max_graph_bytes: int | None = None  # weights one HTP graph may hold; larger parts must be split further
    ai_hub_chipset: str | None = None  # Qualcomm AI Hub's `chipset:` device attribute

    @property
    def dsp_arch(self) -> str:
        return self.htp_arch


@functools.cache
def device_presets() -> dict[str, DevicePreset]:
    """Every device preset (`configs/devices/*.yaml`) by its lower-cased name and aliases."""
    presets: dict[str, DevicePreset] = {}
    for path in sorted((configs_dir() / "devices").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        preset = DevicePreset(
            name=data["name"],
            aliases=tuple(data.get("aliases", [])),
            chipset=data["chipset"],
            soc_model=int(data["soc_model"]),
            htp_arch=str(data["htp_arch"]),
            weight_sharing=bool(data.get("weight_sharing", True)),
            fp16=bool(data.get("fp16", True)),
            max_graph_bytes=int(data["max_graph_bytes"]) if data.get("max_graph_bytes") else None,
            ai_hub_chipset=data.get("ai_hub_chipset"),
        )
        for key in (preset.name, *preset.aliases):
            presets[key.lower()] = preset
    return presets


def find_device(name: str) -> DevicePreset:
    """The device preset called `name` (case-insensitive), or a clear error listing the known ones."""
    from .errors import EdgeLlamaConfigError

    preset = device_presets().get(str(name).lower())
    if preset is None:
        known = sorted({p.name for p in device_presets().values()})
        raise EdgeLlamaConfigError(f"unknown device {name!r}; known devices: {', '.join(known)} (see `edge-llama devices`)")
    return preset

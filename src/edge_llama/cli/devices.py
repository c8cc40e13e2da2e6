"""`edge-llama devices`: the device presets exports can target."""

from __future__ import annotations

import argparse


def add_parser(commands) -> argparse.ArgumentParser:
    return commands.add_parser(
        "devices",
        help="List the devices an export can target (QNN SoC model, Hexagon arch).",
        description="Lists the device presets of configs/devices/: name, chipset, QNN SoC model, HTP arch and aliases.",
    )


def run(args: argparse.Namespace) -> int:
    from edge_llama.presets import device_presets

    devices = sorted({preset.name: preset for preset in device_presets().values()}.values(), key=lambda p: p.name)
    print(f"{'device':<22} {'chipset':<9} {'soc_model':>9}  {'htp':<4} aliases")
    for preset in devices:
        print(f"{preset.name:<22} {preset.chipset:<9} {preset.soc_model:>9}  {preset.htp_arch:<4} {', '.join(preset.aliases)}")
    return 0

"""Device presets: data under configs/devices, found by name or alias, unknown names listed."""

from __future__ import annotations

import pytest

from edge_llama import EdgeLlamaConfigError
from edge_llama.cli.main import main
from edge_llama.presets import find_device


@pytest.mark.parametrize("name", ["Snapdragon 8 Elite", "snapdragon-8-elite", "SM8750"])
def test_device_by_name_or_alias(name):
    device = find_device(name)
    assert (device.chipset, device.soc_model, device.htp_arch) == ("SM8750", 69, "v79")


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(EdgeLlamaConfigError, match="unknown device 'Pixel 9'; known devices: .*Snapdragon 8 Gen 3"):
        find_device("Pixel 9")


def test_devices_command_prints_every_preset(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    for expected in ("Snapdragon 8 Elite", "SM8650", "v75", "Snapdragon X Elite"):
        assert expected in out

"""Every example runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_chat_example_answers():
    assert "Paris" in load("chat").main("What is the capital of France?")


@pytest.mark.slow
def test_export_example_traces_both_graphs():
    programs = load("export_graphs").main(context_length=256)
    assert sorted(programs) == [1, 128]

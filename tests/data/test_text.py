"""Calibration and evaluation text: offline, disjoint, local files accepted."""

from __future__ import annotations

import datasets
import pytest

from edge_llama.data import calibration_batches, load_corpus
from edge_llama.data.text import DataSourceError


def test_offline_corpus_splits_are_disjoint():
    calibration = load_corpus(split="calibration")
    evaluation = load_corpus(split="evaluation")
    assert calibration.num_characters > 500_000 and evaluation.num_characters > 300_000
    assert not set(calibration.documents) & set(evaluation.documents)


def test_calibration_batches_are_deterministic_windows(default_tokenizer):
    first = calibration_batches(default_tokenizer, num_samples=4, sequence_length=64)
    again = calibration_batches(default_tokenizer, num_samples=4, sequence_length=64)
    assert len(first) == 4 and all(b.shape == (1, 64) for b in first)
    assert all((a == b).all() for a, b in zip(first, again))
    assert first[0][0, 0].item() == default_tokenizer.bos_token_id  # documents are joined with BOS


def test_local_file_folder_and_saved_dataset(tmp_path):
    (tmp_path / "one.txt").write_text("first document")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("alpha")
    (tmp_path / "docs" / "b.txt").write_text("beta")
    datasets.Dataset.from_dict({"text": ["gamma", "delta"], "n": [1, 2]}).save_to_disk(str(tmp_path / "saved"))
    assert load_corpus(tmp_path / "one.txt").documents == ("first document",)
    assert load_corpus(tmp_path / "docs").documents == ("alpha", "beta")
    assert load_corpus(tmp_path / "saved").documents == ("gamma", "delta")


def test_bad_sources_are_named(tmp_path, default_tokenizer):
    with pytest.raises(DataSourceError, match="neither a known corpus"):
        load_corpus(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataSourceError, match="has no text"):
        load_corpus(tmp_path / "empty.txt")
    (tmp_path / "short.txt").write_text("just a few words")
    with pytest.raises(DataSourceError, match="Lower num_samples"):
        calibration_batches(default_tokenizer, tmp_path / "short.txt", num_samples=4, sequence_length=64)
    with pytest.raises(DataSourceError, match="WikiText-2 could not be loaded"):
        load_corpus("wikitext-2")  # the hub is unreachable in tests

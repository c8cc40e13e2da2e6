"""Text for calibration and evaluation, from the hub when reachable and from local packages when not."""

from .text import DEFAULT_CORPUS, TextCorpus, calibration_batches, known_corpora, load_corpus

__all__ = ["DEFAULT_CORPUS", "TextCorpus", "calibration_batches", "known_corpora", "load_corpus"]

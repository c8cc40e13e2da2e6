"""Evaluation of float, simulated and exported edge models."""

from .perplexity import PerplexityResult, perplexity

__all__ = ["PerplexityResult", "perplexity"]

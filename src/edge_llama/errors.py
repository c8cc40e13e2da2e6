"""Exceptions with messages a user can act on.

Every error says what was expected, what was found, and what to do. They subclass the builtin
type a caller would catch anyway (`ValueError`, `FileNotFoundError`) so generic handlers keep working.
"""


class EdgeLlamaError(Exception):
    """Base class of every error raised by edge_llama on bad input."""


class EdgeLlamaConfigError(EdgeLlamaError, ValueError):
    """A configuration value is out of range or inconsistent."""


class UnsupportedCheckpointError(EdgeLlamaError, ValueError):
    """The checkpoint is not a Llama-architecture model."""


class CheckpointNotFoundError(EdgeLlamaError, FileNotFoundError):
    """An alias, path or hub id could not be resolved to a checkpoint."""


class TokenizerNotFoundError(EdgeLlamaError, FileNotFoundError):
    """The checkpoint has no tokenizer files."""

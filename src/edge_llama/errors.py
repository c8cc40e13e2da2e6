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


class CheckpointFileError(EdgeLlamaError, ValueError):
    """A file of a checkpoint is unsafe or malformed: too large, too deeply nested, of the wrong types,
    pickled, or pointing outside its folder."""


class OutputFolderError(EdgeLlamaError, FileExistsError):
    """An output path exists and is not a folder edge-llama may replace."""

"""edge-llama: Llama models shaped for phone and laptop NPUs, as transformers classes.

```python
from edge_llama import EdgeLlamaForCausalLM
model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT")
```

Importing the package registers `model_type="edge_llama"` with `AutoConfig` and
`AutoModelForCausalLM`.
"""

import logging as _logging


class _DropTorchaoEnumNotices(_logging.Filter):
    """transformers imports torchao, which registers two enums the way torch 2.14 warns about on every
    import: noise for our users, not theirs to act on. Only that notice is dropped."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return "is an Enum subclass" not in record.getMessage()


_logging.getLogger("torch.utils._pytree").addFilter(_DropTorchaoEnumNotices())

from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from .checkpoints import cache_dir, convert_gguf, load_tokenizer, resolve_checkpoint  # noqa: E402
from .configuration_edge_llama import EdgeLlamaConfig  # noqa: E402
from .errors import (
    CheckpointNotFoundError,
    EdgeLlamaConfigError,
    EdgeLlamaError,
    TokenizerNotFoundError,
    UnsupportedCheckpointError,
)  # noqa: E402
from .generation import EdgeRunner, GraphBackend, KVWindow, TorchGraphBackend  # noqa: E402
from .modeling_edge_llama import EdgeLlamaForCausalLM, EdgeLlamaGraph, EdgeLlamaModel  # noqa: E402
from .quantization.hf_integration import register as _register_quant_method  # noqa: E402

__version__ = "0.1.0"

AutoConfig.register(EdgeLlamaConfig.model_type, EdgeLlamaConfig, exist_ok=True)
AutoModelForCausalLM.register(EdgeLlamaConfig, EdgeLlamaForCausalLM, exist_ok=True)
_register_quant_method()

__all__ = [
    "CheckpointNotFoundError",
    "EdgeLlamaConfig",
    "EdgeLlamaConfigError",
    "EdgeLlamaError",
    "EdgeLlamaForCausalLM",
    "EdgeLlamaGraph",
    "EdgeLlamaModel",
    "EdgeRunner",
    "GraphBackend",
    "KVWindow",
    "TokenizerNotFoundError",
    "TorchGraphBackend",
    "UnsupportedCheckpointError",
    "cache_dir",
    "convert_gguf",
    "load_tokenizer",
    "resolve_checkpoint",
]

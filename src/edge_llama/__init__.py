"""edge-llama: Llama models shaped for phone and laptop NPUs, as transformers classes.

```python
from edge_llama import EdgeLlamaForCausalLM
model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT")
```

Importing the package registers `model_type="edge_llama"` with `AutoConfig` and
`AutoModelForCausalLM`.
"""

from transformers import AutoConfig, AutoModelForCausalLM

from .checkpoints import cache_dir, convert_gguf, load_tokenizer, resolve_checkpoint
from .configuration_edge_llama import EdgeLlamaConfig
from .errors import (
    CheckpointNotFoundError,
    EdgeLlamaConfigError,
    EdgeLlamaError,
    TokenizerNotFoundError,
    UnsupportedCheckpointError,
)
from .generation import EdgeRunner, GraphBackend, KVWindow, TorchGraphBackend
from .modeling_edge_llama import EdgeLlamaForCausalLM, EdgeLlamaGraph, EdgeLlamaModel
from .quantization.hf_integration import register as _register_quant_method

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

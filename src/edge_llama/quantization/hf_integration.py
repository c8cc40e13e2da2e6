"""Registers `quant_method: "edge_llama"` with transformers.

Without it, `LlamaForCausalLM.from_pretrained(<quantized edge folder>)` would warn about an unknown
method and go on as if the checkpoint were float. With it, transformers builds our quantizer, which
stops with an error that says how to load the folder.
"""

from __future__ import annotations

from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING, AUTO_QUANTIZER_MAPPING
from transformers.quantizers.base import HfQuantizer
from transformers.utils.quantization_config import QuantizationConfigMixin

from ..errors import EdgeLlamaError
from .quantize import QUANT_METHOD


class EdgeLlamaQuantizationConfig(QuantizationConfigMixin):
    """The `quantization_config` of an edge-llama quantized checkpoint, as transformers sees it."""

    def __init__(self, **kwargs):
        self.quant_method = QUANT_METHOD
        for key, value in kwargs.items():
            setattr(self, key, value)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class EdgeLlamaQuantizer(HfQuantizer):
    requires_calibration = True

    def validate_environment(self, *args, **kwargs):
        raise EdgeLlamaError(
            f"this checkpoint was quantized by edge-llama (recipe {getattr(self.quantization_config, 'recipe', '?')!r}); "
            "load it with `import edge_llama; edge_llama.EdgeLlamaForCausalLM.from_pretrained(...)` "
            "(or AutoModelForCausalLM after `import edge_llama`)."
        )

    def is_serializable(self):
        return True

    @property
    def is_trainable(self):
        return False


def register() -> None:
    AUTO_QUANTIZATION_CONFIG_MAPPING.setdefault(QUANT_METHOD, EdgeLlamaQuantizationConfig)
    AUTO_QUANTIZER_MAPPING.setdefault(QUANT_METHOD, EdgeLlamaQuantizer)

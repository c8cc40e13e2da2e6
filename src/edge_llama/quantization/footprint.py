"""How many bytes a model's weights take where they run: the quantized grids packed, not simulated.

Simulated models keep float weights; what a device stores is each quantized weight at its bit
width plus its scales (and offsets, and LPBQ's per-block integer scales), and every other weight at
16 bits. Computed from the encodings, so it is the same rule for every engine.
"""

from __future__ import annotations

from .encodings import Encodings, TensorEncoding

UNQUANTIZED_BITS = 16


def weight_bytes(model, encodings: Encodings | None = None) -> int:
    """Packed bytes of every distinct parameter of `model` under `encodings` (16-bit where none)."""
    from ..export.onnx_graphs import canonical_parameters

    if encodings is None and getattr(model, "quantization", None) is not None:
        from .engines import get_engine

        encodings = get_engine(model.quantization.recipe.engine).encodings(model)
    params = encodings.params if encodings is not None else {}
    canonical, _ = canonical_parameters(model)
    total = 0
    for name, tensor in canonical.items():
        encoding = params.get(name)
        total += _encoded_bytes(tensor.numel(), encoding) if encoding else tensor.numel() * UNQUANTIZED_BITS // 8
    return total


def _encoded_bytes(numel: int, encoding: TensorEncoding) -> int:
    payload = (numel * encoding.bw + 7) // 8 if encoding.enc_type != "LPBQ" else (numel * encoding.compressed_bw + 7) // 8
    scales = 4 * len(encoding.scale)  # float32 scales
    if not encoding.is_sym:
        scales += 4 * len(encoding.offset)
    if encoding.per_block_int_scale:
        scales += (len(encoding.per_block_int_scale) * (encoding.bw - encoding.compressed_bw) + 7) // 8
    return payload + scales

"""`model.data`: every weight once, as raw little-endian tensors at aligned offsets (ONNX external data).

The ONNX graphs beside it point into this file with `location`/`offset`/`length`. Writing streams
tensor by tensor (no second copy of the weights in memory); reading memory-maps the file and checks
every offset and length against its size before touching it.
"""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import EdgeLlamaError

ALIGNMENT = 64
FILE_NAME = "model.data"

# torch dtype ↔ ONNX TensorProto data type numbers
_ONNX_TYPES = {
    torch.float32: 1,
    torch.uint8: 2,
    torch.int8: 3,
    torch.uint16: 4,
    torch.int16: 5,
    torch.int32: 6,
    torch.int64: 7,
    torch.bool: 9,
    torch.float16: 10,
    torch.float64: 11,
    torch.bfloat16: 16,
}
_TORCH_TYPES = {number: dtype for dtype, number in _ONNX_TYPES.items()}


class ModelDataError(EdgeLlamaError, ValueError):
    """`model.data` does not hold what the graphs say it holds."""


@dataclass(frozen=True)
class TensorLocation:
    """Where one tensor lives in `model.data`."""

    name: str
    offset: int
    length: int
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def onnx_type(self) -> int:
        return _ONNX_TYPES[self.dtype]

    @classmethod
    def from_onnx(cls, name: str, onnx_type: int, shape, offset: int, length: int) -> TensorLocation:
        if onnx_type not in _TORCH_TYPES:
            raise ModelDataError(f"{name}: unsupported ONNX data type {onnx_type}")
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise ModelDataError(f"{name}: negative dimension in shape {list(shape)}")
        return cls(name, int(offset), int(length), _TORCH_TYPES[onnx_type], shape)

    def expected_length(self) -> int:
        # Python integers: a crafted shape must not wrap around (int64 products of huge dims can be 0).
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


def write_model_data(path: str | os.PathLike, tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, TensorLocation]:
    """Writes `tensors` (name, tensor) one after another; returns where each one went.

    A tensor whose storage was already written under another name (tied weights) is stored once;
    both names point at the same bytes.
    """
    locations: dict[str, TensorLocation] = {}
    written: dict[tuple, TensorLocation] = {}
    with open(path, "wb") as handle:
        for name, tensor in tensors:
            tensor = tensor.detach()
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
            if tensor.device.type == "cpu" and key in written:
                first = written[key]
                locations[name] = TensorLocation(name, first.offset, first.length, first.dtype, first.shape)
                continue
            padding = -handle.tell() % ALIGNMENT
            handle.write(b"\0" * padding)
            data = _little_endian_bytes(tensor)
            location = TensorLocation(name, handle.tell(), len(data), tensor.dtype, tuple(tensor.shape))
            handle.write(data)
            locations[name] = written[key] = location
        handle.flush()
        os.fsync(handle.fileno())
    return locations


def _little_endian_bytes(tensor: torch.Tensor) -> memoryview:
    tensor = tensor.to("cpu").contiguous()
    if tensor.dtype == torch.bfloat16:
        array = tensor.view(torch.int16).numpy()
    else:
        array = tensor.numpy()
    return memoryview(array.astype(array.dtype.newbyteorder("<"), copy=False)).cast("B")


class ModelData:
    """Read access to `model.data`, memory-mapped; tensors are copied out on request."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelDataError(f"{self.path} is missing")
        self.size = self.path.stat().st_size
        self._file = open(self.path, "rb")
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        self._file.close()

    def __enter__(self) -> ModelData:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check(self, location: TensorLocation) -> None:
        if location.offset < 0 or location.length < 0 or location.offset + location.length > self.size:
            raise ModelDataError(
                f"{self.path.name}: tensor {location.name!r} needs bytes [{location.offset}, "
                f"{location.offset + location.length}) but the file has {self.size} bytes; it is truncated or "
                "does not belong to these graphs."
            )
        if location.length != location.expected_length():
            raise ModelDataError(
                f"{self.path.name}: tensor {location.name!r} of shape {list(location.shape)} and type "
                f"{location.dtype} needs {location.expected_length()} bytes, the graph says {location.length}."
            )

    def read(self, location: TensorLocation) -> torch.Tensor:
        self.check(location)
        if location.length == 0:
            return torch.empty(location.shape, dtype=location.dtype)
        raw = self._map[location.offset : location.offset + location.length]
        storage_dtype = torch.int16 if location.dtype == torch.bfloat16 else location.dtype
        tensor = torch.frombuffer(bytearray(raw), dtype=storage_dtype).reshape(location.shape)
        if _big_endian_host() and tensor.element_size() > 1:
            tensor = torch.from_numpy(tensor.numpy().byteswap())
        return tensor.view(torch.bfloat16) if location.dtype == torch.bfloat16 else tensor


def _big_endian_host() -> bool:
    import sys

    return sys.byteorder == "big"

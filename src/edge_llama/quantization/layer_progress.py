"""Per-layer progress of a layer-wise quantization, so an interrupted run continues where it stopped.

```
progress_dir/
  manifest.json                    {"fingerprint": …, "finished_layers": k, "activations": "activations_after_{k-1}.safetensors"}
  layer_{i}.json                   encodings of what layer i settled, and which of them are frozen
  activations_after_{i}.safetensors  the streams entering layer i + 1 (only the newest is kept)
```

Each file is written atomically and the manifest last, so a run killed at any instant leaves either
the previous layer's state or the new one. The fingerprint (recipe, config, calibration tokens,
Sequential MSE settings, a sample of every weight) keeps a different run from resuming this one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .._io import atomic_file
from ..errors import EdgeLlamaError

MANIFEST = "manifest.json"


class ProgressError(EdgeLlamaError, ValueError):
    """A progress folder belongs to another run or is damaged."""


def fingerprint(model, batches, use_seq_mse: bool, candidates: int) -> str:
    digest = hashlib.sha256()
    recipe = model.quantization.recipe if model.quantization is not None else None
    digest.update(json.dumps(recipe.to_dict() if recipe else None, sort_keys=True, default=str).encode())
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    digest.update(json.dumps({"seq_mse": use_seq_mse, "candidates": candidates}).encode())
    for tokens in batches:
        digest.update(tokens.reshape(-1).to(torch.int64).numpy().tobytes())
    for name, tensor in model.named_parameters():
        if name.endswith((".min", ".max")):  # quantizer parameters change as the run goes
            continue
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)][:64].to("cpu", torch.float64)
        digest.update(name.encode() + str(tuple(tensor.shape)).encode() + sample.numpy().tobytes())
    return digest.hexdigest()


class LayerProgress:
    """Reads and writes `progress_dir` (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, model, batches, use_seq_mse: bool, candidates: int):
        self.folder = Path(folder)
        self.fingerprint = fingerprint(model, batches, use_seq_mse, candidates)

    def _manifest(self) -> dict | None:
        path = self.folder / MANIFEST
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ProgressError(f"{path}: not JSON ({error}); delete the folder to start over") from error
        if manifest.get("fingerprint") != self.fingerprint:
            raise ProgressError(
                f"{self.folder} holds the progress of another quantization run (other model, recipe, calibration "
                "data or options); give another progress_dir or delete that folder to start over"
            )
        return manifest

    def load(self, model, device) -> tuple[int, dict | None]:
        """`(finished layers, streams entering the next layer)`; `(0, None)` for a fresh start. Encodings
        of the finished layers are loaded into `model`'s quantizers, frozen as they were."""
        from .aimet_engine import _load_encoding, layer_quantizers
        from .encodings import TensorEncoding

        manifest = self._manifest()
        if manifest is None:
            return 0, None
        finished = int(manifest["finished_layers"])
        for index in range(finished):
            path = self.folder / f"layer_{index}.json"
            saved = json.loads(path.read_text())
            quantizers = dict(layer_quantizers(model, index))
            frozen = set(saved["frozen"])
            for entry in saved["encodings"]:
                if entry["name"] not in quantizers:
                    raise ProgressError(f"{path}: {entry['name']!r} is not a quantizer of layer {index}; delete the folder to start over")
                quantizer = quantizers[entry["name"]]
                if quantizer.is_initialized() and not quantizer.is_overwrite_allowed():
                    continue  # fixed by the recipe (mask, softmax): already as the clean run has it
                _load_encoding(quantizer, TensorEncoding.from_json(entry, str(path)))
                quantizer.allow_overwrite(entry["name"] not in frozen)
        from safetensors import safe_open

        with safe_open(str(self.folder / manifest["activations"]), framework="pt", device=str(device)) as handle:
            orders = handle.metadata() or {}
            tensors = {key: _with_order(handle.get_tensor(key), orders.get(key)) for key in handle.keys()}
        return finished, _unflatten(tensors)

    def save(self, index: int, quantizers: list[tuple[str, object]], streams: dict) -> None:
        from .aimet_engine import _to_encoding

        self.folder.mkdir(parents=True, exist_ok=True)
        previous = self._manifest()
        entries, frozen, seen = [], [], set()
        for name, quantizer in quantizers:
            if name in seen or not quantizer.is_initialized():
                continue
            seen.add(name)
            entries.append(_to_encoding(name, quantizer).to_json())
            if not quantizer.is_overwrite_allowed():
                frozen.append(name)
        with atomic_file(self.folder / f"layer_{index}.json") as handle:
            json.dump({"encodings": entries, "frozen": frozen}, handle)
        activations = f"activations_after_{index}.safetensors"
        _save_tensors_atomically(self.folder / activations, *_flatten(streams))
        with atomic_file(self.folder / MANIFEST) as handle:
            json.dump({"fingerprint": self.fingerprint, "finished_layers": index + 1, "activations": activations}, handle)
        if previous is not None and previous["activations"] != activations:
            (self.folder / previous["activations"]).unlink(missing_ok=True)


def _save_tensors_atomically(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """safetensors writes to a path, not a handle: a temporary name beside `path`, fsynced, renamed."""
    from safetensors.torch import save_file

    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(temporary), metadata=metadata)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    descriptor = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _flatten(streams: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """stream[group][chunk][batch] → {"stream.group.chunk.batch": tensor} (on the host), and each tensor's
    dimension order in memory: the layers' outputs are often transposed views, and a kernel given the
    same values in another memory layout may round differently (the resumed run must match exactly)."""
    flat, orders = {}, {}
    for name, groups in streams.items():
        for g, chunks in enumerate(groups):
            for c, batches in enumerate(chunks):
                for b, tensor in enumerate(batches):
                    key = f"{name}.{g}.{c}.{b}"
                    order = sorted(range(tensor.dim()), key=lambda d: (-tensor.stride(d), d))
                    flat[key] = tensor.detach().permute(order).to("cpu").contiguous()
                    orders[key] = ",".join(map(str, order))
    return flat, orders


def _with_order(tensor: torch.Tensor, order: str | None) -> torch.Tensor:
    if not order:
        return tensor
    order = [int(d) for d in order.split(",")]
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return tensor.permute(inverse)


def _unflatten(flat: dict[str, torch.Tensor]) -> dict:
    streams: dict = {}
    for key in sorted(flat, key=lambda k: (k.split(".")[0], *map(int, k.split(".")[1:]))):
        name, g, c, b = key.split(".")
        groups = streams.setdefault(name, [])
        g, c, b = int(g), int(c), int(b)
        while len(groups) <= g:
            groups.append([])
        while len(groups[g]) <= c:
            groups[g].append([])
        groups[g][c].append(flat[key])
        assert len(groups[g][c]) == b + 1
    return streams

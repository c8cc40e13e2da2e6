"""Nothing lost: an interrupted save or export leaves the previous folder as it was, and running it
again works. Failures are injected at several points of the real writers; one writer is killed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from edge_llama import EdgeLlamaForCausalLM
from edge_llama import _io
from edge_llama._io import atomic_directory, atomic_file, clean_leftovers
from edge_llama.errors import OutputFolderError


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def _injected(*args, **kwargs):
    raise OSError("disk full (injected)")


# -- atomic_directory itself -------------------------------------------------------------------


def test_replaces_an_existing_output_folder_whole(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as staging:
        (staging / "config.json").write_text("old")
        (staging / "stale.onnx").write_text("old graph")
    with atomic_directory(target) as staging:
        (staging / "config.json").write_text("new")
    assert _tree(target) == {"config.json": b"new"}  # no file of the old folder survives
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_failure_at_the_swap_keeps_the_previous_folder(tmp_path, monkeypatch, exchange):
    target = tmp_path / "out"
    with atomic_directory(target) as staging:
        (staging / "config.json").write_text("old")
    if exchange:
        monkeypatch.setattr(_io, "_exchange", _injected)
    else:  # the fallback: the second rename fails after the first moved the old folder aside
        monkeypatch.setattr(_io, "_exchange", lambda a, b: False)
        real_replace = os.replace
        monkeypatch.setattr(_io.os, "replace", lambda a, b: _injected() if Path(a).name.startswith(".out.tmp-") else real_replace(a, b))
    with pytest.raises(OSError, match="injected"), atomic_directory(target) as staging:
        (staging / "config.json").write_text("new")
    assert _tree(target) == {"config.json": b"old"}
    assert _leftovers(tmp_path) == []


def test_fallback_without_exchange_replaces_too(tmp_path, monkeypatch):
    monkeypatch.setattr(_io, "_exchange", lambda a, b: False)
    target = tmp_path / "out"
    for text in ("old", "new"):
        with atomic_directory(target) as staging:
            (staging / "config.json").write_text(text)
    assert _tree(target) == {"config.json": b"new"} and _leftovers(tmp_path) == []


def test_a_folder_of_other_files_is_never_replaced(tmp_path):
    documents = tmp_path / "Documents"
    (documents / "taxes").mkdir(parents=True)
    (documents / "letter.txt").write_text("keep me")
    with pytest.raises(OutputFolderError, match=r"Documents exists and holds 2 entries but no model files .* refusing to replace it"):
        with atomic_directory(documents) as staging:
            (staging / "config.json").write_text("{}")
    assert _tree(documents) == {"letter.txt": b"keep me"} and _leftovers(tmp_path) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="exists and is a file"), atomic_directory(tmp_path / "file"):
        pass


def test_a_symlinked_output_folder_is_replaced_behind_the_link(tmp_path):
    real = tmp_path / "real"
    with atomic_directory(real) as staging:
        (staging / "config.json").write_text("old")
    (tmp_path / "link").symlink_to(real)
    with atomic_directory(tmp_path / "link") as staging:
        (staging / "config.json").write_text("new")
    assert (tmp_path / "link").is_symlink() and _tree(real) == {"config.json": b"new"}


def test_a_killed_writer_leaves_the_previous_folder_and_the_next_run_cleans_up(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as staging:
        (staging / "config.json").write_text("old")
    script = textwrap.dedent(f"""
        import os, sys
        sys.modules["edge_llama"] = type(sys)("edge_llama")  # import _io alone, without transformers
        sys.modules["edge_llama"].__path__ = [{str(Path(_io.__file__).parent)!r}]
        from edge_llama._io import atomic_directory
        with atomic_directory({str(target)!r}) as staging:
            (staging / "config.json").write_text("half")
            os._exit(9)  # as if killed: no cleanup runs
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert _tree(target) == {"config.json": b"old"}
    assert len(_leftovers(tmp_path)) == 1  # the dead writer's staging folder
    with atomic_directory(target) as staging:
        (staging / "config.json").write_text("new")
    assert _tree(target) == {"config.json": b"new"} and _leftovers(tmp_path) == []


def test_a_crash_between_the_two_renames_is_repaired(tmp_path):
    target = tmp_path / "out"
    retired = tmp_path / ".out.old-999999999-x"  # no such process
    (retired / "out").mkdir(parents=True)
    (retired / "out" / "config.json").write_text("previous")
    assert clean_leftovers(target) == [retired]
    assert _tree(target) == {"config.json": b"previous"} and _leftovers(tmp_path) == []


def test_atomic_file_keeps_the_old_content_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    with atomic_file(path) as handle:
        handle.write("old")
    monkeypatch.setattr(_io.os, "fsync", _injected)
    with pytest.raises(OSError, match="injected"), atomic_file(path) as handle:
        handle.write("new")
    assert path.read_text() == "old" and _leftovers(tmp_path) == []


# -- the real writers --------------------------------------------------------------------------


def _logits(model):
    with torch.no_grad():
        return model(torch.arange(3, 40).view(1, -1)).logits


def _half_written_weights(model, staging, activation_names=()):
    (staging / "model.data").write_bytes(b"\0" * 1000)
    raise OSError("disk full (injected)")


@pytest.mark.parametrize(
    "where",
    [
        "edge_llama.export.onnx_graphs.export_onnx_graphs",  # half of model.data written
        "edge_llama.quantization.encodings.Encodings.write",
        "edge_llama.serialization.quantized_folder.file_sha256",  # after the big files, before config.json
        "transformers.PretrainedConfig.save_pretrained",
        "edge_llama.model_card.write_model_card",  # the last file
        "edge_llama._io._fsync_tree",  # everything written, nothing renamed yet
        "edge_llama._io._exchange",  # the swap itself
    ],
)
def test_interrupted_save_keeps_the_previous_checkpoint(quantized_model, saved_quantized, quick_graphs, tmp_path, monkeypatch, where):
    import shutil

    target = tmp_path / "checkpoint"
    shutil.copytree(saved_quantized, target)
    before = _tree(target)
    with monkeypatch.context() as patch:
        patch.setattr(where, _half_written_weights if where.endswith("export_onnx_graphs") else _injected)
        with pytest.raises(OSError, match="injected"):
            quantized_model.save_pretrained(target)
    assert _tree(target) == before and _leftovers(tmp_path) == []
    quantized_model.save_pretrained(target)  # running it again works
    assert torch.equal(_logits(EdgeLlamaForCausalLM.from_pretrained(target)), _logits(quantized_model))


@pytest.mark.slow
def test_interrupted_real_export_inside_save_keeps_the_previous_checkpoint(quantized_model, saved_quantized, tmp_path, monkeypatch):
    """The same with the real ONNX export running up to the weights (about a minute here)."""
    import shutil

    target = tmp_path / "checkpoint"
    shutil.copytree(saved_quantized, target)
    before = _tree(target)
    with monkeypatch.context() as patch:
        patch.setattr("edge_llama.export.onnx_graphs.write_model_data", _injected)
        with pytest.raises(OSError, match="injected"):
            quantized_model.save_pretrained(target)
    assert _tree(target) == before and _leftovers(tmp_path) == []
    quantized_model.save_pretrained(target)
    assert torch.equal(_logits(EdgeLlamaForCausalLM.from_pretrained(target)), _logits(quantized_model))


@pytest.mark.slow
def test_interrupted_export_keeps_the_previous_export(quantized_model, tmp_path, monkeypatch):
    target = tmp_path / "export"
    quantized_model.export("onnx", target, parts=2)
    before = _tree(target)
    with monkeypatch.context() as patch:
        patch.setattr("edge_llama.export.onnx_parts.save_tokenizer", _injected)  # the last step of the export
        with pytest.raises(OSError, match="injected"):
            quantized_model.export("onnx", target, parts=2, overwrite=True)
    assert _tree(target) == before and _leftovers(tmp_path) == []
    quantized_model.export("onnx", target, parts=3, overwrite=True)
    assert sorted(p.name for p in target.glob("part_*_ar1_*.onnx")) == [f"part_{i}_of_3_ar1_cl64.onnx" for i in (1, 2, 3)]


def test_interrupted_export_step_keeps_the_previous_export(tmp_path, monkeypatch):
    """`export_model`'s atomicity with a stand-in target that writes some files and then fails."""
    from edge_llama.export import export_model

    def fake_target(model, staging, fail=False):
        (staging / "config.json").write_text("{}")
        (staging / "part_1_of_1.onnx").write_bytes(b"graph")
        if fail:
            raise OSError("disk full (injected)")

    monkeypatch.setattr("edge_llama.export.export_function", lambda target: fake_target)
    target = tmp_path / "export"
    export_model(None, "onnx", target)
    before = _tree(target)
    with pytest.raises(OSError, match="injected"):
        export_model(None, "onnx", target, overwrite=True, fail=True)
    assert _tree(target) == before and _leftovers(tmp_path) == []
    export_model(None, "onnx", target, overwrite=True)
    assert _tree(target) == before


def test_interrupted_float_save_keeps_the_previous_folder(tmp_path, monkeypatch):
    from ..conftest import edge_from, tiny_llama

    model = edge_from(tiny_llama())
    target = tmp_path / "float"
    model.save_pretrained(target)
    before = _tree(target)
    with monkeypatch.context() as patch:
        patch.setattr("edge_llama._io._fsync_tree", _injected)
        with pytest.raises(OSError, match="injected"):
            model.save_pretrained(target)
    assert _tree(target) == before and _leftovers(tmp_path) == []

"""Push to and pull from the loopback Hub with the real `huggingface_hub` and `transformers` clients."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM

from .loopback_hub import LoopbackHub, point_hf_client_at

TOKEN = "hf_loopback_test_token"
BIG = 10 * 1024 * 1024 + 123  # just over the 10 MiB LFS threshold


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.setattr(tqdm, "monitor_interval", 0)  # progress bars would start tqdm's monitor thread
    threads_before = set(threading.enumerate())
    with LoopbackHub() as server:
        point_hf_client_at(server.endpoint, monkeypatch, cache_dir=tmp_path / "default-cache")
        yield server
    leftover = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert not leftover, f"threads left running: {leftover}"


@pytest.fixture
def folder(tmp_path) -> Path:
    folder = tmp_path / "upload"
    (folder / "weights").mkdir(parents=True)
    (folder / "notes.txt").write_text("edge-llama loopback hub\n")
    (folder / "weights" / "big.bin").write_bytes(os.urandom(BIG))
    return folder


def _read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_create_repo_is_idempotent_with_exist_ok(hub):
    api = HfApi(token=TOKEN)
    url = api.create_repo("edge/empty")
    assert url.repo_id == "edge/empty" and url.endpoint == hub.endpoint
    assert api.create_repo("edge/empty", exist_ok=True).repo_id == "edge/empty"
    with pytest.raises(HfHubHTTPError, match="409"):
        api.create_repo("edge/empty")
    assert api.list_repo_files("edge/empty") == [".gitattributes"]


def test_upload_folder_list_and_snapshot_download(hub, folder, tmp_path):
    api = HfApi(token=TOKEN)
    api.create_repo("edge/checkpoint", exist_ok=True)
    commit = api.upload_folder(repo_id="edge/checkpoint", folder_path=folder, commit_message="add files")

    assert sorted(api.list_repo_files("edge/checkpoint")) == [".gitattributes", "notes.txt", "weights/big.bin"]
    top_level = {entry.path: entry for entry in api.list_repo_tree("edge/checkpoint")}
    assert set(top_level) == {".gitattributes", "notes.txt", "weights"}
    big = next(iter(api.list_repo_tree("edge/checkpoint", "weights")))
    assert big.size == BIG and big.lfs is not None and big.lfs.size == BIG

    info = api.model_info("edge/checkpoint", files_metadata=True)
    assert info.sha == commit.oid == api.repo_info("edge/checkpoint", revision="main").sha
    assert {s.rfilename: s.lfs is not None for s in info.siblings}["weights/big.bin"]

    # The big file went through preupload + the LFS batch API, never through Xet.
    paths = {path for _, path in hub.requests}
    assert "/edge/checkpoint.git/info/lfs/objects/batch" in paths
    assert ("PUT", f"/lfs-objects/{big.lfs.sha256}") in hub.requests
    assert not any("xet" in path for path in paths)

    snapshot = Path(snapshot_download("edge/checkpoint", revision="main", cache_dir=tmp_path / "fresh-cache"))
    assert snapshot.name == commit.oid
    downloaded = _read_tree(snapshot)
    assert downloaded.pop(".gitattributes")
    assert downloaded == _read_tree(folder)

    one = hf_hub_download("edge/checkpoint", "notes.txt", cache_dir=tmp_path / "other-cache")
    assert Path(one).read_text() == "edge-llama loopback hub\n"


def test_transformers_push_to_hub_and_from_pretrained(hub, tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=128,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    model.push_to_hub("edge/tiny-llama", token=TOKEN)

    files = set(HfApi().list_repo_files("edge/tiny-llama"))
    assert {"config.json", "model.safetensors", "README.md"} <= files

    loaded = LlamaForCausalLM.from_pretrained("edge/tiny-llama", cache_dir=tmp_path / "fresh-cache")
    expected, actual = model.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name


def test_errors_are_hub_errors(hub, tmp_path):
    api = HfApi(token=TOKEN)
    api.create_repo("edge/errors")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("edge/missing")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_files("edge/errors", revision="0" * 40)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("edge/errors", "nope.txt", cache_dir=tmp_path / "cache")
    with pytest.raises(HfHubHTTPError, match="401"):
        HfApi(token=False).create_repo("edge/anonymous")

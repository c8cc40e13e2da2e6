"""Tokens are read from the standard places and never printed, logged or written into a file we produce.

Each test pushes or pulls with a distinctive token, then searches every file under `tmp_path` (saved
folders, the hub client's cache, downloads), every file the loopback Hub stored, every log record
(DEBUG, all loggers) and everything written to stdout/stderr (file descriptors, so subprocess and C
output count too).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from edge_llama import EdgeLlamaError, EdgeLlamaForCausalLM

from ..loopback_hub import LoopbackHub, point_hf_client_at

ENV_TOKEN = "hf_envSECRETtoken0123456789abcdef"
STORED_TOKEN = "hf_storedSECRETtoken0123456789abcd"
ARGUMENT_TOKEN = "hf_argumentSECRETtoken0123456789ab"
AI_HUB_TOKEN = "aihubSECRETtoken0123456789abcdef01"


def _leaks(token: str, roots: list[Path], hub: LoopbackHub | None, caplog, capfd) -> list[str]:
    """Where `token` shows up."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and token.encode() in path.read_bytes():
                found.append(str(path))
    if hub is not None:
        found += [f"hub blob {sha[:12]}" for sha, blob in hub.blobs.items() if token.encode() in blob]
    found += [f"log {record.name}: {record.getMessage()[:80]}" for record in caplog.records if token in record.getMessage()]
    out, err = capfd.readouterr()
    found += [f"{name}" for name, text in (("stdout", out), ("stderr", err)) if token in text]
    return found


@pytest.fixture
def hub(monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with LoopbackHub() as server:
        point_hf_client_at(server.endpoint, monkeypatch, cache_dir=tmp_path / "hf-cache")
        yield server


@pytest.mark.parametrize("source", ["HF_TOKEN", "stored token", "token argument"])
def test_hub_push_and_pull_never_leak_the_token(quantized_model, quick_graphs, hub, tmp_path, monkeypatch, caplog, capfd, source):
    from huggingface_hub import constants

    kwargs = {}
    if source == "HF_TOKEN":
        token = ENV_TOKEN
        monkeypatch.setenv("HF_TOKEN", token)
    elif source == "stored token":  # what `hf auth login` writes
        token = STORED_TOKEN
        monkeypatch.delenv("HF_TOKEN")
        stored = tmp_path / "hf-home" / "token"
        stored.parent.mkdir()
        stored.write_text(token)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(stored))
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(stored.parent / "stored_tokens"))
    else:
        token = ARGUMENT_TOKEN
        monkeypatch.delenv("HF_TOKEN")
        kwargs = {"token": token}
    from huggingface_hub import get_token

    assert get_token() == (None if kwargs else token)  # the standard places, read by the hub client

    quantized_model.push_to_hub("edge-tests/secret", **kwargs)  # the loopback Hub refuses writes without a token
    pulled = EdgeLlamaForCausalLM.from_pretrained("edge-tests/secret", cache_dir=str(tmp_path / "download"), **kwargs)
    pulled.save_pretrained(tmp_path / "saved-again")
    with pytest.raises(EdgeLlamaError):  # an error path, with the token in hand
        EdgeLlamaForCausalLM.from_pretrained("edge-tests/no-such-repo", cache_dir=str(tmp_path / "download"), **kwargs)
    with torch.no_grad():
        assert torch.equal(pulled(torch.arange(3, 20).view(1, -1)).logits, quantized_model(torch.arange(3, 20).view(1, -1)).logits)
    roots = [tmp_path / "download", tmp_path / "saved-again", tmp_path / "hf-cache"]
    assert _leaks(token, roots, hub, caplog, capfd) == []
    (tmp_path / "saved-again" / "probe").write_text(token)  # the search itself works
    logging.getLogger("probe").info("token %s", token)
    print(token)
    assert len(_leaks(token, roots, hub, caplog, capfd)) == 3
    assert (tmp_path / "saved-again" / "model.data").is_file()  # the search looked at real output


def test_ai_hub_token_is_read_from_client_ini_and_never_shown(tmp_path, monkeypatch, caplog, capfd):
    pytest.importorskip("qai_hub")
    from edge_llama.export.qai_hub import QaiHubExportError, hub_client

    caplog.set_level(logging.DEBUG)
    home = tmp_path / "home"
    ini = home / ".qai_hub" / "client.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(f"[api]\napi_token = {AI_HUB_TOKEN}\napi_url = http://127.0.0.1:9\nweb_url = http://127.0.0.1:9\nverbose = True\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("QAIHUB_CLIENT_INI", raising=False)
    assert hub_client().config.api_token == AI_HUB_TOKEN  # ~/.qai_hub/client.ini, qai-hub's standard place

    ini.write_text(f"[api]\napi_token = {AI_HUB_TOKEN}\n")  # incomplete: the client refuses it
    with pytest.raises(QaiHubExportError) as error:
        hub_client()
    assert AI_HUB_TOKEN not in str(error.value)
    assert _leaks(AI_HUB_TOKEN, [tmp_path / "out"] if (tmp_path / "out").exists() else [], None, caplog, capfd) == []

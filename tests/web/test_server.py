"""The demo server without a browser: where it binds, the answer stream, the history, the CLI."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge_llama.cli.main import main
from edge_llama.web import ChatError, ChatOptions, ChatService
from edge_llama.web.server import is_loopback

from .conftest import TINY_CONTEXT, running_server


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1"])
def test_other_hosts_are_refused_without_allow_remote(host, capsys):
    assert not is_loopback(host)
    assert main(["demo", "--web", "--host", host, "--checkpoint", "not-loaded"]) == 2
    err = capsys.readouterr().err
    assert f"--host {host} is not a loopback address" in err and "--allow-remote" in err


def post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(url + path.lstrip("/"), data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_client_disconnect_stops_generation(tiny_service):
    service = tiny_service
    service.options.max_new_tokens = 1000
    with running_server(service) as url:
        conversation = post(url, "/api/conversations", {})["conversation"]
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        body = json.dumps({"conversation": conversation, "prompt": "Go on and on"})
        connection.request("POST", "/api/chat", body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
        assert response.readline().decode().startswith("event: token")
        connection.close()  # the reader goes away mid-answer

        deadline = time.monotonic() + 20
        while service.info()["generating"]:
            assert time.monotonic() < deadline, "generation went on after the client disconnected"
            time.sleep(0.05)
        computed = service.info()["tokens_computed"]
        assert 0 < computed < 1000
        time.sleep(0.5)
        assert service.info()["tokens_computed"] == computed
        # and the server answers the next request
        assert post(url, "/api/conversations", {})["conversation"] != conversation


def test_requests_other_sites_could_send_are_refused(tiny_service):
    with running_server(tiny_service) as url:
        form = urllib.request.Request(url + "api/load", data=b'{"checkpoint": "someone/else"}', headers={"Content-Type": "text/plain"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(form, timeout=30)
        assert refused.value.code == 415 and "Content-Type: application/json" in json.load(refused.value)["error"]
        rebound = urllib.request.Request(url + "api/info", headers={"Host": "attacker.example:8000"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=30)
        assert refused.value.code == 400
        assert tiny_service.info()["checkpoint"] == tiny_service.checkpoint != "someone/else"
        assert json.load(urllib.request.urlopen(url.replace("127.0.0.1", "localhost") + "api/info", timeout=30))["state"] == "ready"


def test_a_server_others_can_reach_does_not_load_checkpoints(tiny_service):
    with running_server(tiny_service, allow_remote=True) as url:  # still bound to loopback here
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(url, "/api/load", {"checkpoint": "DEFAULT"})
        assert refused.value.code == 403 and "does not load other checkpoints" in json.load(refused.value)["error"]
        named = urllib.request.Request(url + "api/info", headers={"Host": "chat.example:8000"})
        info = json.load(urllib.request.urlopen(named, timeout=30))  # any name: it serves a network
        assert info["allow_load"] is False and info["checkpoint"] == tiny_service.checkpoint


def test_history_is_kept_on_the_server_and_slides_past_the_context(tiny_service):
    service = tiny_service
    service.options.max_new_tokens = 100
    conversation = service.new_conversation()
    statuses = []
    for prompt in ("First question", "Second question", "Third question"):
        pieces = []
        statuses.append(service.answer(service.prepare(conversation, prompt), on_text=pieces.append))
        assert statuses[-1]["output_tokens"] == 100 and statuses[-1]["ended"] == "max tokens"
        assert "".join(pieces).strip() == statuses[-1]["text"]
    first, second, third = statuses
    assert second["prompt_tokens"] > first["prompt_tokens"] + 50  # the whole history, re-templated
    assert third["prompt_tokens"] + 100 > TINY_CONTEXT + 100  # the window slid past the context
    assert [m["role"] for m in service.messages(conversation)] == ["user", "assistant"] * 3


def test_bad_turns_are_refused_clearly(tiny_service):
    conversation = tiny_service.new_conversation()
    with pytest.raises(ChatError, match="the prompt is empty"):
        tiny_service.prepare(conversation, " \n ")
    with pytest.raises(ChatError, match=r"the prompt is \d+ tokens with the chat template, but the context holds 256"):
        tiny_service.prepare(conversation, "word " * 300)
    with pytest.raises(ChatError, match="press New chat"):
        tiny_service.prepare("no-such-conversation", "Hi")
    pending = tiny_service.prepare(conversation, "Hi")  # the refusals released the generation lock
    with pytest.raises(ChatError, match="another answer is being generated"):
        tiny_service.prepare(tiny_service.new_conversation(), "Me too")
    assert tiny_service.answer(pending)["output_tokens"] > 0


@pytest.mark.slow
def test_default_model_over_the_command_line():
    """`edge-llama demo --web` as users start it: two turns on DEFAULT, the second continuing the window."""
    script = Path(sys.executable).parent / "edge-llama"
    command = [str(script), "demo", "--web", "--port", "0", "--context-length", "1024", "--max-output-tokens", "32"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        line = server.stdout.readline()
        assert line.startswith("edge-llama chat: http://127.0.0.1:"), line
        url = line.split()[2]
        deadline = time.monotonic() + 600
        while json.load(urllib.request.urlopen(url + "api/info", timeout=30))["state"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        conversation = post(url, "/api/conversations", {})["conversation"]
        answers = [chat(url, conversation, "What is the capital of France?"), chat(url, conversation, "And of Italy?")]
        assert "Paris" in answers[0]["text"]
        assert answers[1]["reused_tokens"] > answers[0]["prompt_tokens"]  # only the new turn was computed
    finally:
        server.terminate()
        server.wait(30)


def chat(url: str, conversation: str, prompt: str) -> dict:
    body = json.dumps({"conversation": conversation, "prompt": prompt}).encode()
    request = urllib.request.Request(url + "api/chat", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        events = response.read().decode().split("\n\n")
    done = [event for event in events if event.startswith("event: done")]
    assert len(done) == 1, events[-3:]
    return json.loads(done[0].split("data: ", 1)[1])


def test_an_exported_program_answers_through_its_runtime(default_model_path, tmp_path):
    """An onnx-int4 export (the cheapest export to build here) chats through ONNX Runtime, not PyTorch."""
    from ..conftest import edge_from, tiny_llama

    edge = edge_from(tiny_llama(vocab_size=49152, intermediate_size=128), context_length=TINY_CONTEXT, ar_lengths=[16, 1])
    edge.name_or_path = default_model_path  # the export carries SmolLM2's tokenizer files
    folder = edge.export("onnx-int4", tmp_path / "onnx-int4", max_seq_len=16)
    service = ChatService(str(folder), ChatOptions(max_new_tokens=4))
    assert service.wait_until_loaded(60) and service.model is not None, service.load_error
    assert "ONNX Runtime" in service.info()["backend"]
    conversation = service.new_conversation()
    first = service.answer(service.prepare(conversation, "Hi"))
    second = service.answer(service.prepare(conversation, "Again"))
    assert first["output_tokens"] == second["output_tokens"] == 4 and "ONNX Runtime" in second["backend"]
    assert second["prompt_tokens"] > first["prompt_tokens"] + 4

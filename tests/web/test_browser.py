"""The chat page in headless Chromium: streaming, status line, stop, new chat, errors."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from edge_llama.web import ChatOptions, ChatService

from .conftest import TINY_CONTEXT, running_server, screenshot

LONG_ANSWER = 1000  # tokens: far more than the test waits for, so stop always lands mid-answer


def ask(page, prompt: str) -> None:
    page.fill("#prompt", prompt)
    page.click("#send")


def last_answer(page):
    return page.locator(".message.assistant, .message.error").last


def test_stream_stop_and_new_chat(page, tiny_service):
    service = tiny_service
    service.options.max_new_tokens = LONG_ANSWER
    with running_server(service) as url:
        page.goto(url)
        expect(page.locator("#model-line")).to_contain_text(f"CL {TINY_CONTEXT} · AR 128/1 · float32 · host (PyTorch)")

        ask(page, "Tell me a very long story.")
        expect(page.locator(".message.user")).to_have_text("Tell me a very long story.")
        answer = last_answer(page)
        expect(answer).to_have_class(re.compile("streaming"))
        expect(answer.locator(".text")).not_to_have_text("")  # text arrived while the answer is still running
        assert "streaming" in answer.get_attribute("class") and page.is_enabled("#stop")
        streamed_before_stop = answer.locator(".text").inner_text().strip()

        page.click("#stop")
        status = answer.locator(".status")
        expect(status).to_contain_text("stopped")
        expect(status).to_contain_text(re.compile(r"time to first token \d+\.\d\d s · \d+\.\d tokens/s"))
        expect(status).to_contain_text("float32 · host (PyTorch)")
        assert answer.locator(".text").inner_text().startswith(streamed_before_stop)  # the answer went on from there
        screenshot(page, "stopped_answer")

        # Server side: the answer ended early and generate() computes nothing more.
        info = service.info()
        assert not info["generating"]
        computed = info["tokens_computed"]
        assert 0 < computed < LONG_ANSWER
        assert f"{computed} new tokens" in status.inner_text()
        time.sleep(1.0)
        assert service.info()["tokens_computed"] == computed

        conversation = page.evaluate("conversation")
        assert [m["role"] for m in service.messages(conversation)] == ["user", "assistant"]
        page.click("#new-chat")
        expect(page.locator(".message")).to_have_count(0)
        page.wait_for_function("old => conversation !== old", arg=conversation)
        fresh = page.evaluate("conversation")
        assert fresh != conversation and service.messages(fresh) == []

        service.options.max_new_tokens = 4
        ask(page, "Hello again")
        expect(last_answer(page).locator(".status")).to_contain_text("max tokens")
        assert [m["content"] for m in service.messages(fresh)][0] == "Hello again"
        screenshot(page, "new_chat")

        # New chat in the middle of an answer stops it first.
        service.options.max_new_tokens = LONG_ANSWER
        ask(page, "Another long one")
        expect(last_answer(page).locator(".text")).not_to_have_text("")
        page.click("#new-chat")
        expect(page.locator(".message")).to_have_count(0)
        assert not service.info()["generating"] and service.info()["tokens_computed"] < computed + LONG_ANSWER


def test_bad_prompts_show_an_error_and_the_server_keeps_serving(page, tiny_service):
    with running_server(tiny_service) as url:
        page.goto(url)
        expect(page.locator("#model-line")).to_contain_text("float32")

        page.click("#send")
        expect(page.locator(".message.error")).to_have_text("the prompt is empty: type a question first")

        ask(page, "word " * (2 * TINY_CONTEXT))
        expect(last_answer(page)).to_have_class(re.compile("error"))
        expect(last_answer(page)).to_contain_text(f"but the context holds {TINY_CONTEXT}")
        assert page.input_value("#prompt").startswith("word")  # kept, so it can be shortened
        expect(page.locator(".message.user")).to_have_count(0)  # and not shown as part of the conversation

        ask(page, "A short question")
        expect(last_answer(page).locator(".status")).to_contain_text("new tokens")
        assert tiny_service.info()["tokens_computed"] > 0
        screenshot(page, "bad_prompts")


def test_checkpoint_that_fails_to_load_then_one_that_loads(page, tmp_path, tiny_checkpoint):
    missing = str(tmp_path / "no-such-model")
    service = ChatService(missing, ChatOptions(context_length=TINY_CONTEXT, max_new_tokens=4))
    service.wait_until_loaded(30)
    with running_server(service) as url:
        page.goto(url)
        line = page.locator("#model-line")
        expect(line).to_have_class(re.compile("error"))
        expect(line).to_contain_text(f"{missing} failed to load")
        expect(line).to_contain_text("not found")

        ask(page, "Anyone there?")
        expect(last_answer(page)).to_have_class(re.compile("error"))
        expect(page.locator(".message.user")).to_have_count(0)
        expect(last_answer(page)).to_contain_text("failed to load")
        screenshot(page, "failed_checkpoint")

        page.fill("#checkpoint-input", tiny_checkpoint)
        page.click("#load-button")
        expect(line).to_contain_text("float32 · host (PyTorch)")
        expect(page.locator(".message")).to_have_count(0)
        ask(page, "Now?")
        expect(last_answer(page).locator(".status")).to_contain_text("4 new tokens")


@pytest.mark.slow
def test_default_model_answers_paris(page):
    service = ChatService("DEFAULT", ChatOptions(context_length=1024, max_new_tokens=32))
    assert service.wait_until_loaded(600) and service.model is not None, service.load_error
    with running_server(service) as url:
        page.goto(url)
        expect(page.locator("#model-line")).to_contain_text("30 layers")
        ask(page, "What is the capital of France?")
        answer = last_answer(page)
        expect(answer.locator(".status")).to_contain_text("tokens/s", timeout=300_000)
        assert "Paris" in answer.locator(".text").inner_text()
        screenshot(page, "default_paris")

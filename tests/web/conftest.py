"""A tiny checkpoint, a demo server on a free loopback port, and headless Debian Chromium."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed (pip install 'edge-llama[web]')")
pytest.importorskip("uvicorn", reason="the web extra is not installed (pip install 'edge-llama[web]')")

from edge_llama.web import ChatOptions, ChatService  # noqa: E402
from edge_llama.web import server as web_server  # noqa: E402

from ..conftest import tiny_llama  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parent / "_screenshots"
TINY_CONTEXT = 256


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny model's matmuls are microseconds: on this shared 2-core machine a second torch thread
    made its decoding 10x slower (89 → 8 tokens/s), so these tests run torch on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def tiny_checkpoint(tmp_path_factory, default_tokenizer) -> str:
    """A random tiny Llama with SmolLM2's tokenizer and chat template (gibberish answers, fast)."""
    folder = tmp_path_factory.mktemp("web") / "tiny"
    tiny_llama(vocab_size=49152, hidden_size=64, intermediate_size=112).save_pretrained(folder)
    default_tokenizer.save_pretrained(folder)
    return str(folder)


@contextmanager
def running_server(service: ChatService, allow_remote: bool = False):
    """Serves `service` on a free loopback port in a background thread; yields the page's URL."""
    sock = web_server.bind("127.0.0.1", 0)
    server = web_server.make_server(service, sock, allow_remote=allow_remote)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="edge-llama-web-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the demo server did not start"
        time.sleep(0.02)
    try:
        yield web_server.url_of(sock)
    finally:
        service.stop()
        for _ in range(2):  # the second ask forces connections still streaming closed
            server.should_exit = True
            thread.join(5)
            server.force_exit = True
        assert not thread.is_alive(), "the demo server did not stop"


@pytest.fixture
def tiny_service(tiny_checkpoint) -> ChatService:
    service = ChatService(tiny_checkpoint, ChatOptions(context_length=TINY_CONTEXT, max_new_tokens=8))
    assert service.wait_until_loaded(60) and service.model is not None, service.load_error
    return service


@pytest.fixture(scope="package")
def browser():
    """Headless Debian Chromium driven by Playwright (the system browser; none is downloaded)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium) or apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path

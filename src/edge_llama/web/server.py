"""The web demo's HTTP face: a Starlette app over a `ChatService`, served by uvicorn.

Routes (JSON in, JSON out, except the answer stream):

- `GET /` the page; `GET /static/…` its script and style (served from this package, no CDN);
- `GET /api/info` the checkpoint's state, the backend and `tokens_computed`, the server-side count of
  tokens `generate()` computed (what the browser test reads to check that stop stops);
- `POST /api/conversations` a new conversation id; `POST /api/load {"checkpoint"}` another checkpoint;
- `POST /api/chat {"conversation", "prompt"}` the answer as server-sent events: `token` events with
  `{"text"}`, then one `done` event with the status line, or one `error` event;
- `POST /api/stop {"conversation"}` ends the answer being generated after its current token; a client
  that disconnects from the stream stops it the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .chat_service import ChatError, ChatService, PendingAnswer

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def create_app(service: ChatService, allow_load: bool = True, allowed_hosts: list[str] | None = None) -> Starlette:
    """The demo's ASGI app.

    `allow_load=False` refuses `POST /api/load` (for servers others can reach). `allowed_hosts`, when
    given, are the only `Host` headers answered: a loopback server answers only its loopback names, so
    a web page elsewhere cannot reach it through a DNS name that resolves to 127.0.0.1.
    """

    async def index(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def info(request: Request):
        return JSONResponse({**service.info(), "allow_load": allow_load})

    async def new_conversation(request: Request):
        return JSONResponse({"conversation": service.new_conversation()})

    async def load(request: Request):
        if not allow_load:
            raise ChatError("this server does not load other checkpoints (it serves beyond loopback)", status_code=403)
        body = await _json(request)
        service.load(str(body.get("checkpoint", "")))
        return JSONResponse({**service.info(), "allow_load": allow_load}, status_code=202)

    async def stop(request: Request):
        body = await _json(request)
        return JSONResponse({"stopped": service.stop(body.get("conversation"))})

    async def chat(request: Request):
        body = await _json(request)
        pending = service.prepare(str(body.get("conversation", "")), str(body.get("prompt", "")))
        return StreamingResponse(
            _start_answer(service, pending),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def chat_error(request: Request, error: ChatError):
        return JSONResponse({"error": str(error)}, status_code=error.status_code)

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/conversations", new_conversation, methods=["POST"]),
        Route("/api/load", load, methods=["POST"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/stop", stop, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware, exception_handlers={ChatError: chat_error})


async def _json(request: Request) -> dict:
    # Only JSON: another site's page can POST a form or text/plain here without asking, but not JSON.
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ChatError("send the request body as JSON (Content-Type: application/json)", status_code=415)
    try:
        body = await request.json()
    except ValueError as error:
        raise ChatError(f"the request body is not JSON ({error})") from error
    if not isinstance(body, dict):
        raise ChatError(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def _start_answer(service: ChatService, pending: PendingAnswer):
    """Starts the answer in a worker thread at once (so the generation lock is always released) and
    returns the server-sent events of its text."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def put(kind: str, data: dict) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, (kind, data))
        except RuntimeError:  # the server shut down mid-answer: nobody is listening
            pending.stop.request()

    def work() -> None:
        try:
            put("done", service.answer(pending, on_text=lambda text: put("token", {"text": text})))
        except Exception as error:  # noqa: BLE001 - shown on the page; the server keeps serving
            logger.exception("generation failed")
            put("error", {"error": f"generation failed: {type(error).__name__}: {error}"})

    loop.run_in_executor(None, work)

    async def stream():
        try:
            while True:
                kind, data = await events.get()
                yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
                if kind != "token":
                    break
        finally:
            pending.stop.request()  # a no-op after the end; stops the model when the client went away

    return stream()


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) only resolves to loopback addresses."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


def check_host(host: str, allow_remote: bool) -> None:
    """Refuses a non-loopback `host` unless `allow_remote`: the demo has no authentication."""
    from ..errors import EdgeLlamaConfigError

    if not allow_remote and not is_loopback(host):
        raise EdgeLlamaConfigError(
            f"--host {host} is not a loopback address; the web demo has no authentication, so it binds to "
            "127.0.0.1 by default. Pass --allow-remote to serve it to other machines anyway."
        )


def bind(host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False) -> socket.socket:
    """A listening socket on `host:port` (port 0: a free one, read it from `getsockname()`)."""
    from ..errors import EdgeLlamaConfigError

    check_host(host, allow_remote)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        raise EdgeLlamaConfigError(f"cannot serve on --host {host} --port {port}: {error.strerror or error}; pick another port") from error
    sock.listen(64)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def make_server(service: ChatService, sock: socket.socket, allow_remote: bool = False, log_level: str = "warning"):
    """A uvicorn server for the demo on a bound socket; `server.run(sockets=[sock])` serves until
    `server.should_exit` is set (or Ctrl+C)."""
    import uvicorn

    allowed_hosts = None
    if not allow_remote:
        host = sock.getsockname()[0]
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]", f"[{host}]" if ":" in host else host]
    app = create_app(service, allow_load=not allow_remote, allowed_hosts=allowed_hosts)
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=2))


def serve(service: ChatService, host: str = "127.0.0.1", port: int = 8000, allow_remote: bool = False, log_level: str = "warning") -> None:
    """Serves the demo on `host:port` until interrupted (blocking)."""
    sock = bind(host, port, allow_remote)
    print(f"edge-llama chat: {url_of(sock)} (Ctrl+C stops)", flush=True)
    make_server(service, sock, allow_remote, log_level).run(sockets=[sock])

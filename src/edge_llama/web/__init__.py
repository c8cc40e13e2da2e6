"""`edge-llama demo --web`: a local chat page for any checkpoint the library loads.

Needs the `web` extra (`pip install 'edge-llama[web]'`: Starlette and uvicorn). The page is one
static HTML/JS/CSS file set served from this package; answers stream as server-sent events.

```python
>>> from edge_llama.web import ChatOptions, ChatService, serve
>>> serve(ChatService("DEFAULT", ChatOptions(context_length=1024)), port=8000)   # http://127.0.0.1:8000
```
"""

from .chat_service import ChatError, ChatOptions, ChatService

__all__ = ["ChatError", "ChatOptions", "ChatService", "create_app", "serve"]


def __getattr__(name: str):
    # The server needs the optional web extra; the service does not.
    if name in ("create_app", "serve"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

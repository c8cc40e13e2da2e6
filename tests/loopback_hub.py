"""An in-memory Hugging Face Hub on 127.0.0.1, for tests that use the real `huggingface_hub` client.

Standard library only. Model repos with `namespace/name` ids; writes go to branch `main`, reads accept
`main` or any commit sha. Implemented endpoints (the subset `huggingface_hub` 2.4 uses):

    POST      /api/repos/create                           create_repo (409 + url if it exists)
    POST      /api/validate-yaml                          README.md check made by create_commit
    GET       /api/models/{repo}[/revision/{rev}]         model_info / repo_info
    GET       /api/models/{repo}/tree/{rev}[/{path}]      list_repo_tree / list_repo_files
    POST      /api/models/{repo}/preupload/{rev}          upload mode per file: "regular" or "lfs"
    POST      /{repo}.git/info/lfs/objects/batch          LFS batch API, "basic" transfer only
    PUT       /lfs-objects/{sha256}                       LFS upload target handed out by the batch API
    POST      /api/models/{repo}/commit/{rev}             ndjson commit of `file` and `lfsFile` lines
    HEAD|GET  /{repo}/resolve/{rev}/{path}                download, with X-Repo-Commit, ETag, Content-Length

Xet storage is not served: the client picks Xet on its own whenever `hf_xet` is installed, so tests must
set `HF_HUB_DISABLE_XET` (`point_hf_client_at` does). Downloads never carry `X-Xet-Hash`, so they stay HTTP.
New repos start with one commit holding `.gitattributes`, as on the Hub. Writes need a bearer token, any
token; headers are never logged or stored. No pagination, Range requests, deletions, pull requests or branches.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_THRESHOLD = 10 * 1024 * 1024  # bigger files, and any file whose first 512 bytes hold a NUL byte, go to LFS
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class _File:
    sha256: str  # key into LoopbackHub.blobs
    git_sha1: str  # git blob id of the content
    size: int
    lfs: bool

    def tree_entry(self, path: str) -> dict:
        """The file as `/tree` lists it; an LFS file's git oid is that of its pointer file."""
        if not self.lfs:
            return {"type": "file", "path": path, "size": self.size, "oid": self.git_sha1}
        pointer = _lfs_pointer(self.sha256, self.size)
        lfs = {"oid": self.sha256, "size": self.size, "pointerSize": len(pointer)}
        return {"type": "file", "path": path, "size": self.size, "oid": _git_sha1(pointer), "lfs": lfs}


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


class LoopbackHub:
    """`with LoopbackHub() as hub:` serves on `hub.endpoint` until the block ends, then stops every thread."""

    def __init__(self) -> None:
        self.heads: dict[str, str] = {}  # repo id -> commit sha of branch main
        self.commits: dict[tuple[str, str], dict[str, _File]] = {}  # (repo id, commit sha) -> {path: file}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content, for regular and LFS files alike
        self.requests: list[tuple[str, str]] = []  # (method, path) seen, without query or headers
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="loopback-hub")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()  # also joins the request threads (ThreadingMixIn.block_on_close)
        self._thread.join()

    # -- state helpers (call with self.lock held) --------------------------------------------------

    def store(self, data: bytes, lfs: bool) -> _File:
        sha256 = hashlib.sha256(data).hexdigest()
        self.blobs.setdefault(sha256, data)
        return _File(sha256, _git_sha1(data), len(data), lfs)

    def commit(self, repo_id: str, files: dict[str, _File]) -> str:
        sha = hashlib.sha1(f"{repo_id}\0{len(self.commits)}\0{sorted(files.items())}".encode()).hexdigest()
        self.commits[repo_id, sha], self.heads[repo_id] = files, sha
        return sha

    def resolve(self, repo_id: str, revision: str) -> tuple[str, dict[str, _File]]:
        if repo_id not in self.heads:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        sha = self.heads[repo_id] if revision == "main" else revision
        if (repo_id, sha) not in self.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha, self.commits[repo_id, sha]


_REPO = r"(?P<repo>[^/]+/[^/]+)"
_REV = r"(?P<rev>[^/]+)"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads at shutdown
    timeout = 30  # a silent client cannot hold a request thread forever
    server: ThreadingHTTPServer

    routes = [  # (methods, path pattern, handler); patterns match the raw, still quoted, path
        ("POST", r"/api/repos/create", "create_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", rf"/api/models/{_REPO}(?:/revision/{_REV})?", "repo_info"),
        ("GET", rf"/api/models/{_REPO}/tree/{_REV}(?:/(?P<path>.*))?", "tree"),
        ("POST", rf"/api/models/{_REPO}/preupload/{_REV}", "preupload"),
        ("POST", rf"/{_REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", r"/lfs-objects/(?P<oid>[0-9a-f]{64})", "lfs_put"),
        ("POST", rf"/api/models/{_REPO}/commit/{_REV}", "commit"),
        ("GET|HEAD", rf"/{_REPO}/resolve/{_REV}/(?P<path>.+)", "resolve"),
    ]

    @property
    def hub(self) -> LoopbackHub:
        return self.server.hub

    def log_message(self, format, *args) -> None:  # noqa: A002 - never print requests (or anything else)
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_GET

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self.hub.lock:
            self.hub.requests.append((self.command, url.path))
        try:
            self.body = self._read_body()
            for method, pattern, name in self.routes:
                match = re.fullmatch(pattern, url.path)
                if match and re.fullmatch(method, self.command):
                    args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    return getattr(self, name)(**args)
            raise HubError(404, f"No route for {self.command} {url.path}")
        except (HubError, KeyError, TypeError, ValueError) as err:
            if not isinstance(err, HubError):  # a malformed request: answer it rather than drop the connection
                err = HubError(400, f"Malformed request: {err!r}")
            code = {"X-Error-Code": err.code} if err.code else {}
            self._send({"error": str(err)}, err.status, {"X-Error-Message": str(err), **code, **err.headers})

    def _read_body(self) -> bytes:
        if "Transfer-Encoding" in self.headers:  # huggingface_hub always sends Content-Length
            raise HubError(411, "Send request bodies with a Content-Length")
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, body: bytes | dict | list, status: int = 200, headers: dict | None = None) -> None:
        if not isinstance(body, bytes):
            body, headers = json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self) -> dict:
        return json.loads(self.body or b"{}")  # invalid JSON is a ValueError: answered with a 400

    def _require_token(self) -> None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HubError(401, "Invalid credentials in Authorization header")

    # -- routes -------------------------------------------------------------------------------------

    def create_repo(self) -> None:
        self._require_token()
        payload = self._json()
        if payload.get("type", "model") != "model":
            raise HubError(400, "The loopback hub only hosts model repos")
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        url = f"{self.hub.endpoint}/{repo_id}"
        with self.hub.lock:
            if repo_id in self.hub.heads:
                return self._send({"error": "You already created this model repo", "url": url}, 409)
            self.hub.commit(repo_id, {".gitattributes": self.hub.store(GITATTRIBUTES, lfs=False)})
        self._send({"url": url, "name": repo_id})

    def validate_yaml(self) -> None:
        self._send({"errors": [], "warnings": []})

    def repo_info(self, repo: str, rev: str = "main") -> None:
        with self.hub.lock:
            sha, files = self.hub.resolve(repo, rev)
        siblings = []  # always with the details that `?blobs=true` (files_metadata=True) asks for
        for path, file in sorted(files.items()):
            entry = file.tree_entry(path)
            lfs = {**entry["lfs"], "sha256": file.sha256} if file.lfs else None
            siblings.append({"rfilename": path, "size": file.size, "blobId": entry["oid"], "lfs": lfs})
        self._send({
            "id": repo, "modelId": repo, "author": repo.split("/")[0], "sha": sha, "private": False,
            "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
        })  # fmt: skip

    def tree(self, repo: str, rev: str, path: str = "") -> None:
        with self.hub.lock:
            _, files = self.hub.resolve(repo, rev)
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        entries, folders = [], set()
        for file_path, file in sorted(files.items()):
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix) :].split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(file.tree_entry(file_path))
        if prefix and not entries and not folders:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        for folder in sorted(folders):
            entries.append({"type": "directory", "path": folder, "size": 0, "oid": _git_sha1(folder.encode())})
        self._send(entries)

    def preupload(self, repo: str, rev: str) -> None:
        self._require_token()
        with self.hub.lock:
            _, files = self.hub.resolve(repo, rev)
        result = []
        for item in self._json().get("files", []):
            lfs = item["size"] >= LFS_THRESHOLD or b"\0" in base64.b64decode(item["sample"])
            remote = files.get(item["path"])
            oid = None if remote is None else (remote.sha256 if lfs else remote.git_sha1)  # same file => no upload
            mode = "lfs" if lfs else "regular"
            result.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._send({"files": result})

    def lfs_batch(self, repo: str) -> None:
        self._require_token()
        payload = self._json()
        with self.hub.lock:
            self.hub.resolve(repo, "main")
            stored = set(self.hub.blobs)
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(400, "Only 'upload' with the 'basic' transfer is supported")
        objects = []
        for obj in payload.get("objects", []):
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in stored:
                href = f"{self.hub.endpoint}/lfs-objects/{obj['oid']}"
                item["actions"] = {"upload": {"href": href}}
            objects.append(item)
        self._send({"transfer": "basic", "objects": objects})

    def lfs_put(self, oid: str) -> None:
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, "Uploaded content does not match its sha256")
        with self.hub.lock:
            self.hub.blobs.setdefault(oid, self.body)
        self._send(b"")

    def commit(self, repo: str, rev: str) -> None:
        self._require_token()
        if rev != "main" or self.query.get("create_pr"):
            raise HubError(400, "The loopback hub only commits to branch 'main' (no pull requests)")
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "A commit starts with a header line")
        with self.hub.lock:
            files = dict(self.hub.resolve(repo, rev)[1])
            for op in lines[1:]:
                key, value = op["key"], op["value"]
                path = value["path"]
                if key == "file":
                    files[path] = self.hub.store(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    data = self.hub.blobs.get(value["oid"])
                    if data is None:
                        raise HubError(400, f"LFS object {value['oid']} for {path} was never uploaded")
                    files[path] = self.hub.store(data, lfs=True)
                else:
                    raise HubError(400, f"Unsupported commit operation {key!r}")
            sha = self.hub.commit(repo, files)
        url = f"{self.hub.endpoint}/{repo}/commit/{sha}"
        self._send({"success": True, "commitOid": sha, "commitUrl": url, "pullRequestUrl": None})

    def resolve(self, repo: str, rev: str, path: str) -> None:
        with self.hub.lock:
            sha, files = self.hub.resolve(repo, rev)
            file = files.get(path)
            data = None if file is None else self.hub.blobs[file.sha256]
        if file is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        etag = file.sha256 if file.lfs else file.git_sha1
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
        self._send(data, 200, headers)


def point_hf_client_at(endpoint: str, monkeypatch, cache_dir) -> None:
    """Send every `huggingface_hub` / `transformers` Hub call of this test to `endpoint` (undone by `monkeypatch`).

    `huggingface_hub.constants` reads its environment once, at import, and several values are derived from it
    or captured in objects, so setting `HF_ENDPOINT` from inside an already running test is not enough.
    The environment variables are still set, for any subprocess the test starts.
    """
    from huggingface_hub import constants, hf_api

    for name, value in dict(
        HF_ENDPOINT=endpoint, HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0", HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_CACHE=str(cache_dir), HF_TOKEN="hf_loopback_fake_token",
    ).items():  # fmt: skip
        monkeypatch.setenv(name, value)  # HF_TOKEN is read per request: a real stored token is never sent
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"  # hf_hub_url() builds every download URL with it
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {urlsplit(endpoint).hostname})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # tests/conftest.py turns offline mode on
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # upload through preupload + LFS batch, not Xet
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # no telemetry, no agent-registry fetch
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))  # implicit downloads (model cards) land here
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)  # the HfApi behind huggingface_hub.create_repo & co.
    try:
        from transformers.utils import hub as transformers_hub
    except ImportError:
        return
    monkeypatch.setattr(transformers_hub, "_hf_api", None)  # transformers caches one HfApi, made on first use

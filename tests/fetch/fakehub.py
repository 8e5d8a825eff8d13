"""A Hugging Face-compatible hub for tests, served by aiohttp on 127.0.0.1 in a thread.

It answers what ``huggingface_hub`` 2.4 calls for a download: ``GET
/api/models/{repo}/revision/{rev}`` (model info: the commit ``sha`` and ``siblings`` with
sizes and LFS data when ``blobs=True``) and ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``
(``ETag``, ``X-Repo-Commit``, ``Content-Length``, ``X-Linked-Size``/``X-Linked-Etag`` for
LFS files, ``Range``), with the hub's ``X-Error-Code`` on errors. No Xet headers: the
client must work over plain HTTP. ``/files/{name}`` serves plain files (``Range``,
``If-Range``) for ``ballast fetch url``.

Faults are per path: drop the connection after N bytes (once), announce a wrong size, or
answer a status. Every request is recorded (method, path, Range, Authorization) and the
body bytes sent are counted per path.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def commit_id(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gguf")


@dataclass
class Repo:
    """A repository: commits (sha -> files) and refs (``main`` -> sha)."""

    commits: dict[str, dict[str, bytes]]
    refs: dict[str, str]
    token: str | None = None  # private: the API and files need this bearer token
    gated: bool = False  # info is public, files answer 403 GatedRepo

    @classmethod
    def single(cls, files: dict[str, bytes], label: str = "c1") -> Repo:
        sha = commit_id(label)
        return cls(commits={sha: files}, refs={"main": sha})


@dataclass
class Fault:
    drop_after: int | None = None  # send this many body bytes, then close (once)
    then_status: int | None = None  # after the drop, answer this status
    get_status_once: int | None = None  # answer one content GET with this status, then
    then: Callable[[], None] | None = None  # ... call this
    announce: int | None = None  # the size the hub claims (listing, HEAD)
    status: int | None = None  # answer this status to HEAD and GET
    partial_total: int | None = None  # the total a 206 answer claims in Content-Range
    changed: bool = False  # an If-Range never matches: the file changed since


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    if_range: str | None
    authorization: str | None


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    plain: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    body_bytes: Counter[str] = field(default_factory=Counter)
    api_status: int | None = None
    url: str = ""

    # -- what the tests read ---------------------------------------------------------
    def content_gets(self, suffix: str = "") -> list[Seen]:
        return [
            s
            for s in self.seen
            if s.method == "GET" and not s.path.startswith("/api/") and s.path.endswith(suffix)
        ]

    def total_body_bytes(self) -> int:
        return sum(self.body_bytes.values())

    def reset_counts(self) -> None:
        self.seen.clear()
        self.body_bytes.clear()

    # -- the app -----------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/models/{owner}/{name}/revision/{rev}", self._info)
        app.router.add_route("*", "/{owner}/{name}/resolve/{rev}/{path:.+}", self._resolve)
        app.router.add_route("*", "/files/{path:.+}", self._plain)
        return app

    def _record(self, request: web.Request) -> None:
        self.seen.append(
            Seen(
                method=request.method,
                path=request.path,
                range=request.headers.get("Range"),
                if_range=request.headers.get("If-Range"),
                authorization=request.headers.get("Authorization"),
            )
        )

    def _repo(self, request: web.Request) -> tuple[str, Repo] | web.Response:
        repo_id = f"{request.match_info['owner']}/{request.match_info['name']}"
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        if (
            repo.token is not None
            and request.headers.get("Authorization") != f"Bearer {repo.token}"
        ):
            return _error(401, "RepoNotFound", "Invalid username or password.")
        return repo_id, repo

    def _commit(self, repo: Repo, rev: str) -> str | None:
        if rev in repo.commits:
            return rev
        return repo.refs.get(rev)

    async def _info(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        if self.api_status is not None:
            return web.Response(status=self.api_status, text="unavailable")
        found = self._repo(request)
        if isinstance(found, web.Response):
            return found
        repo_id, repo = found
        sha = self._commit(repo, request.match_info["rev"])
        if sha is None:
            return _error(404, "RevisionNotFound", "Invalid rev id")
        siblings = []
        for path, data in sorted(repo.commits[sha].items()):
            size = self.faults.get(path, Fault()).announce or len(data)
            entry: dict[str, object] = {"rfilename": path, "size": size, "blobId": sha1(data)}
            if path.endswith(LFS_SUFFIXES):
                entry["lfs"] = {
                    "size": size,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "pointerSize": 134,
                }
            siblings.append(entry)
        body = {
            "_id": "x",
            "id": repo_id,
            "modelId": repo_id,
            "sha": sha,
            "private": repo.token is not None,
            "gated": "manual" if repo.gated else False,
            "siblings": siblings,
        }
        return web.json_response(body)

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        found = self._repo(request)
        if isinstance(found, web.Response):
            return found
        _, repo = found
        sha = self._commit(repo, request.match_info["rev"])
        if sha is None:
            return _error(404, "RevisionNotFound", "Invalid rev id")
        path = request.match_info["path"]
        data = repo.commits[sha].get(path)
        if data is None:
            return _error(404, "EntryNotFound", "Entry not found", commit=sha)
        if repo.gated:
            return _error(403, "GatedRepo", "Access to this model is restricted.", commit=sha)
        fault = self.faults.get(path, Fault())
        if fault.status is not None:
            return web.Response(status=fault.status, text="fault")
        lfs = path.endswith(LFS_SUFFIXES)
        etag = hashlib.sha256(data).hexdigest() if lfs else sha1(data)
        headers = {"ETag": f'"{etag}"', "X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if lfs:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(fault.announce or len(data))
        if request.method == "GET" and fault.get_status_once is not None:
            status, fault.get_status_once = fault.get_status_once, None
            if fault.then is not None:
                fault.then()
            return web.Response(status=status, text="fault")
        if request.method == "HEAD":
            head = web.StreamResponse(status=200, headers=headers)
            head.content_length = len(data)
            await head.prepare(request)
            return head
        return await self._send(request, path, data, headers, fault)

    async def _plain(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        path = request.match_info["path"]
        data = self.plain.get(path)
        if data is None:
            return web.Response(status=404, text="not found")
        fault = self.faults.get(path, Fault())
        if fault.status is not None:
            return web.Response(status=fault.status, text="fault")
        headers = {"ETag": f'"{sha1(data)}"', "Accept-Ranges": "bytes"}
        return await self._send(request, path, data, headers, fault)

    async def _send(
        self, request: web.Request, path: str, data: bytes, headers: dict[str, str], fault: Fault
    ) -> web.StreamResponse:
        start, status = 0, 200
        asked = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        honour = asked is not None and (
            if_range is None or (if_range == headers.get("ETag") and not fault.changed)
        )
        if asked and honour and asked.startswith("bytes=") and asked.endswith("-"):
            start = int(asked[len("bytes=") : -1])
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            status = 206
        body = data[start:]
        response = web.StreamResponse(status=status, headers=headers)
        if status == 206:
            total = fault.partial_total or len(data)
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{total}"
        response.content_length = len(body)
        await response.prepare(request)
        cut = fault.drop_after
        if cut is not None and start < cut:
            fault.drop_after = None
            fault.status = fault.then_status
            await response.write(body[: cut - start])
            self.body_bytes[path] += cut - start
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(body)
        self.body_bytes[path] += len(body)
        await response.write_eof()
        return response


def _error(status: int, code: str, message: str, commit: str | None = None) -> web.Response:
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    if commit:
        headers["X-Repo-Commit"] = commit
    return web.json_response({"error": message}, status=status, headers=headers)


class Served:
    """A :class:`FakeHub` listening on 127.0.0.1 in its own thread and event loop."""

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self) -> Served:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.hub.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.hub.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

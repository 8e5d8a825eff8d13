"""``ballast fetch url``: one GGUF file over plain HTTP(S) into ``DIR/model.gguf``.

The bytes go to ``DIR/model.gguf.part``; after a dropped connection (in this run, or a
previous run of the Job) the download goes on from the part's length with ``Range``
(and ``If-Range`` with the validator of the first response, kept in
``model.gguf.part.json``, so a file changed upstream starts over instead of being
spliced). The size is checked against the server's total (``Content-Length``, or the
total of ``Content-Range``): a mismatch is refused and the part removed. Only then is
the part renamed to ``model.gguf``. Standard library only (no huggingface_hub).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ballast import __version__
from ballast.fetch.outcome import (
    EXIT_PERMANENT,
    FetchError,
    Log,
    Request,
    Result,
    permanent,
    transient,
)

TARGET = "model.gguf"
CHUNK = 1 << 20
TIMEOUT_SECONDS = 30.0
CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


@dataclass
class Progress:
    """What this run knows about the file: its total and validator, once a server said."""

    total: int | None = None
    validator: str | None = None


class Dropped(Exception):
    """The connection ended before the body did: resume."""


def _paths(dest: Path) -> tuple[Path, Path, Path]:
    return dest / TARGET, dest / f"{TARGET}.part", dest / f"{TARGET}.part.json"


def _load_state(meta: Path, url: str) -> Progress | None:
    """The state saved beside a part of the same URL, else ``None`` (the part is not ours)."""
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("url") != url:
        return None
    total, validator = data.get("total"), data.get("validator")
    return Progress(
        total=total if isinstance(total, int) else None,
        validator=validator if isinstance(validator, str) else None,
    )


def _save_state(meta: Path, url: str, state: Progress) -> None:
    meta.write_text(
        json.dumps({"url": url, "total": state.total, "validator": state.validator}),
        encoding="utf-8",
    )


def _validator(headers: Any) -> str | None:
    etag = headers.get("ETag")
    if isinstance(etag, str) and etag and not etag.startswith("W/"):
        return etag
    modified = headers.get("Last-Modified")
    return modified if isinstance(modified, str) and modified else None


def _open(url: str, offset: int, state: Progress) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"ballast-fetch/{__version__}", "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
        if state.validator:
            headers["If-Range"] = state.validator
    response = urllib.request.urlopen(  # the CLI checked the scheme
        urllib.request.Request(url, headers=headers), timeout=TIMEOUT_SECONDS
    )
    if not isinstance(response, http.client.HTTPResponse):
        raise permanent(f"unsupported URL {url}")
    return response


def _mismatch(url: str, detail: str) -> FetchError:
    return permanent(f"size mismatch for {url}: {detail}; refused")


def _agree(url: str, state: Progress, total: int | None) -> None:
    """Record the server's total; a different total than an earlier answer is refused."""
    if total is None:
        return
    if state.total is not None and state.total != total:
        raise _mismatch(url, f"the server now says {total} bytes, earlier {state.total}")
    state.total = total


def _body_start(url: str, response: http.client.HTTPResponse, offset: int, state: Progress) -> int:
    """Where the body of ``response`` starts in the file, checking its totals."""
    if response.status == 206:
        match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None:
            raise _mismatch(url, "a partial answer without a usable Content-Range")
        start, total = int(match.group(1)), match.group(3)
        _agree(url, state, None if total == "*" else int(total))
        return start
    # A whole body (no Range asked, the Range ignored, or If-Range saw a changed file):
    # its length is the total from now on.
    length = response.headers.get("Content-Length")
    state.total = int(length) if length and length.isdigit() else None
    return 0


def _attempt(url: str, part: Path, meta: Path, state: Progress) -> None:
    """One request: append to ``part`` from its length; raise :class:`Dropped` to resume."""
    offset = part.stat().st_size if part.exists() else 0
    if offset and state.total is not None and offset >= state.total:
        return
    try:
        response = _open(url, offset, state)
    except urllib.error.HTTPError as e:
        with e:
            if e.code == 416 and offset:
                match = UNSATISFIED_RANGE.fullmatch(e.headers.get("Content-Range", "").strip())
                if match and int(match.group(1)) == offset:
                    _agree(url, state, offset)
                    return
                part.unlink()
                raise Dropped("the server cannot continue the part: starting over") from None
            raise _http_error(url, e.code) from None
    with response:
        start = _body_start(url, response, offset, state)
        if start not in (0, offset):
            raise _mismatch(url, f"asked for bytes from {offset}, the server sent from {start}")
        if not part.exists() or start == 0:
            state.validator = _validator(response.headers)
        _save_state(meta, url, state)
        with part.open("r+b" if part.exists() else "wb") as out:
            out.seek(start)
            out.truncate()
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as e:
                raise Dropped(
                    f"connection dropped after {out.tell()} bytes ({type(e).__name__})"
                ) from None
            # http.client ends a short body with b"" rather than an error: compare with its length.
            if response.length:
                raise Dropped(f"connection dropped after {out.tell()} bytes")


def _http_error(url: str, status: int) -> FetchError:
    if status in (401, 403):
        return permanent(f"unauthorized (HTTP {status}) for {url}")
    if status in (404, 410):
        return permanent(f"{url} not found (HTTP {status})")
    if status >= 500 or status in (408, 429):
        return transient(f"the server answered HTTP {status} for {url}")
    return permanent(f"the server refused {url} (HTTP {status})")


def fetch(request: Request, log: Log, retries: int = 5) -> Result:
    """Download ``request.url`` to ``DIR/model.gguf`` (see the module docstring)."""
    url = request.url or ""
    target, part, meta = _paths(request.dest)
    # Without a matching marker (checked before) the target is not known to be this URL's.
    target.unlink(missing_ok=True)
    state = _load_state(meta, url) if part.exists() else None
    if state is None:
        part.unlink(missing_ok=True)
        state = Progress()
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _attempt(url, part, meta, state)
            break
        except Dropped as e:
            reason = str(e)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            reason = f"network error: {getattr(e, 'reason', None) or type(e).__name__}"
        except http.client.HTTPException as e:
            reason = f"protocol error: {type(e).__name__}"
        except FetchError as e:
            if e.code == EXIT_PERMANENT:
                part.unlink(missing_ok=True)
                meta.unlink(missing_ok=True)
                raise
            reason = e.message
        after = part.stat().st_size if part.exists() else 0
        failures = 0 if after > before else failures + 1
        if failures > retries:
            raise transient(f"giving up on {url} after {retries} retries: {reason}")
        log(f"{reason}; resuming from byte {after}")
        time.sleep(min(0.5 * 2 ** max(failures - 1, 0), 10.0))
    size = part.stat().st_size
    if state.total is not None and size != state.total:
        part.unlink()
        meta.unlink(missing_ok=True)
        raise _mismatch(url, f"received {size} bytes, the server announced {state.total}")
    os.replace(part, target)
    meta.unlink(missing_ok=True)
    return Result(revision=None, files=1, bytes=size)

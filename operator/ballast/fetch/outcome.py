"""What a fetch was asked for and what it produced: the completion marker, the result
line, the termination log and the exit codes (the contract with the loader Job).

The marker ``DIR/.ballast-complete`` is written last and atomically (temporary file,
fsync, rename), so a directory without it is never served. A later run whose request
matches the marker does nothing, without a network request.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_TRANSIENT, EXIT_PERMANENT = 0, 1, 2
MARKER = ".ballast-complete"
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")
MAX_MESSAGE_BYTES = 1024

#: Where progress lines go (stderr in the command).
Log = Callable[[str], None]


class FetchError(Exception):
    """A failure with its exit code: ``EXIT_PERMANENT`` (the Job fails at once) or
    ``EXIT_TRANSIENT`` (the Job retries with backoff)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def permanent(message: str) -> FetchError:
    return FetchError(EXIT_PERMANENT, message)


def transient(message: str) -> FetchError:
    return FetchError(EXIT_TRANSIENT, message)


@dataclass(frozen=True)
class Request:
    """One fetch as asked on the command line (the marker's identity)."""

    source: str  # "hf" | "url"
    dest: Path
    repo: str | None = None
    revision: str | None = None  # asked: a branch, tag or commit; None for url
    gguf: str | None = None
    url: str | None = None
    retries: int = 5  # url: resumes in a row without progress (not part of the identity)

    @property
    def repo_id(self) -> str:
        if self.repo is None:
            raise ValueError("not a Hugging Face request")
        return self.repo

    def identity(self) -> dict[str, Any]:
        if self.source == "url":
            return {"source": "url", "url": self.url, "requested": None}
        return {
            "source": "hf",
            "repo": self.repo,
            "requested": self.revision,
            "gguf": self.gguf,
        }


@dataclass(frozen=True)
class Result:
    """What is in the directory: the commit it holds (hf), file count and bytes."""

    revision: str | None
    files: int
    bytes: int

    def line(self) -> str:
        return json.dumps(
            {"revision": self.revision, "bytes": self.bytes, "files": self.files},
            separators=(",", ":"),
        )


def completed(request: Request) -> Result | None:
    """The result recorded by a finished run of the same request, else ``None``."""
    try:
        data = json.loads((request.dest / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    identity = request.identity()
    if any(data.get(k) != v for k, v in identity.items()):
        return None
    files, size, revision = data.get("files"), data.get("bytes"), data.get("revision")
    if not isinstance(files, int) or not isinstance(size, int):
        return None
    if request.source == "hf" and not isinstance(revision, str):
        return None
    return Result(revision=revision if isinstance(revision, str) else None, files=files, bytes=size)


def forget(request: Request) -> None:
    """Remove a marker left by a different request, before anything in the directory changes."""
    (request.dest / MARKER).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: Path, text: str) -> None:
    """``path`` holds ``text`` or its previous content, never a part of it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def mark_complete(request: Request, result: Result, now: datetime | None = None) -> None:
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    marker = {
        **request.identity(),
        "revision": result.revision,
        "files": result.files,
        "bytes": result.bytes,
        "completedAt": stamp,
    }
    write_atomically(request.dest / MARKER, json.dumps(marker, indent=2, sort_keys=True) + "\n")


def one_line(message: str, secrets: tuple[str, ...] = ()) -> str:
    """``message`` on one line, secrets replaced, at most 1 KiB of UTF-8."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    text = " ".join(message.split())
    data = text.encode("utf-8")
    if len(data) > MAX_MESSAGE_BYTES:
        text = data[: MAX_MESSAGE_BYTES - 3].decode("utf-8", errors="ignore") + "..."
    return text


def termination_log(explicit: str | None) -> Path | None:
    """Where to write the outcome: the flag, else ``/dev/termination-log`` when the kubelet
    has mounted it (the file exists and is writable), else nowhere."""
    if explicit:
        return Path(explicit)
    path = DEFAULT_TERMINATION_LOG
    if path.is_file() and os.access(path, os.W_OK):
        return path
    return None


def write_termination_log(path: Path | None, text: str) -> str | None:
    """Write ``text``; an error is returned as a message, never raised."""
    if path is None:
        return None
    try:
        path.write_text(text + "\n", encoding="utf-8")
    except OSError as e:
        return f"cannot write the termination log {path}: {e.strerror or e}"
    return None

"""``ballast fetch hf``: one commit of a Hugging Face repository into a directory.

Built on ``huggingface_hub``: the revision is resolved to a commit once (one
``model_info`` call that also lists the files with their sizes), the plan
(:mod:`.choose`) picks the files, and ``hf_hub_download(local_dir=…)`` fetches each at
that commit, so every byte is one commit's. The library resumes a file with HTTP Range
when the connection drops mid-file, checks each file's size against the hub's, keeps
per-file metadata under ``DIR/.cache/huggingface`` (a restarted Job skips the files it
already has without a request) and honours ``HF_ENDPOINT`` and ``HF_TOKEN``. Xet
storage is used when the hub offers it and is not required: plain HTTP works.

Errors become :class:`~.outcome.FetchError` with the Job's exit code; messages are built
here (one line, never the token), not copied from the library.
"""

from __future__ import annotations

import errno
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    DisabledRepoError,
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils.tqdm import disable_progress_bars

from ballast.fetch import choose
from ballast.fetch.outcome import FetchError, Log, Request, Result, permanent, transient

GGUF_LINK = "model.gguf"
MAX_WORKERS = 4


def _status(error: HfHubHTTPError) -> int | None:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def classify(error: BaseException, request: Request, what: str) -> FetchError:
    """The exit code and one-line message for a library error while fetching ``what``."""
    repo, rev = request.repo, request.revision
    if isinstance(error, GatedRepoError):
        return permanent(
            f"{repo} is gated: accept its conditions on the hub with the account whose token is in "
            f"HF_TOKEN (tokenSecretRef) ({what})"
        )
    if isinstance(error, RevisionNotFoundError):
        return permanent(f"revision {rev} not found in {repo}")
    if isinstance(error, RemoteEntryNotFoundError):
        return permanent(f"{what} not found in {repo} at {rev}")
    if isinstance(error, DisabledRepoError):
        return permanent(f"{repo} is disabled on the hub")
    if isinstance(error, RepositoryNotFoundError):
        status = _status(error)
        return permanent(
            f"repository {repo} not found or not accessible (HTTP {status}): check the name, "
            "and for a private or gated repository the token in HF_TOKEN (tokenSecretRef)"
        )
    if isinstance(error, HfHubHTTPError):
        status = _status(error)
        if status in (401, 403):
            return permanent(
                f"unauthorized (HTTP {status}) for {what} of {repo}: check the token in HF_TOKEN "
                "(tokenSecretRef) and its access to the repository"
            )
        if status == 404:
            return permanent(f"{what} of {repo} not found (HTTP 404)")
        if status is None or status >= 500 or status in (408, 429):
            return transient(f"the hub answered HTTP {status} for {what} of {repo}")
        return permanent(f"the hub refused {what} of {repo} (HTTP {status})")
    if isinstance(error, OfflineModeIsEnabled):
        return permanent("HF_HUB_OFFLINE is set: the loader must be online")
    if isinstance(error, FileMetadataError):
        return permanent(
            f"the endpoint did not answer like a Hugging Face hub for {what} of {repo} (check HF_ENDPOINT)"
        )
    if isinstance(error, ValueError):  # an invalid repository id, a file too big for HTTP
        return permanent(f"cannot fetch {what} of {repo}: {error}")
    if isinstance(error, LocalEntryNotFoundError) and error.__cause__ is not None:
        return classify(error.__cause__, request, what)
    if isinstance(error, httpx2.TransportError | ConnectionError | TimeoutError):
        return transient(f"network error while fetching {what} of {repo}: {type(error).__name__}")
    if isinstance(error, OSError):
        if "Consistency check failed" in str(error):
            return permanent(
                f"size mismatch for {what} of {repo}: the bytes received differ from the size "
                "the hub announced; refused"
            )
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return permanent(
                f"no space left in {request.dest} while fetching {what} of {repo}: the cache "
                "volume is too small (cache.size)"
            )
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return permanent(f"cannot write {request.dest}: {error.strerror}")
        return transient(f"I/O error while fetching {what} of {repo}: {error.strerror or error}")
    return transient(f"unexpected error while fetching {what} of {repo}: {type(error).__name__}")


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


def resolve(request: Request) -> Resolved:
    """The commit ``request.revision`` names now, and that commit's files with sizes."""
    try:
        info = HfApi(token=_token()).model_info(
            request.repo_id, revision=request.revision, files_metadata=True
        )
    except Exception as e:
        raise classify(e, request, f"revision {request.revision}") from None
    if not info.sha:
        raise permanent(f"the hub gave no commit for {request.repo} at {request.revision}")
    files = [
        choose.RepoFile(path=s.rfilename, size=s.lfs.size if s.lfs is not None else s.size)
        for s in info.siblings or []
    ]
    return Resolved(commit=info.sha, files=files)


def plan(request: Request, files: list[choose.RepoFile]) -> list[choose.RepoFile]:
    if request.gguf is not None:
        try:
            return [choose.gguf_file(files, request.gguf)]
        except choose.ChoiceError as e:
            raise permanent(f"{request.repo}: {e}") from None
    chosen = choose.engine_files(files)
    if not chosen:
        raise permanent(f"{request.repo} has no files to serve at {request.revision}")
    return chosen


def _download(request: Request, commit: str, file: choose.RepoFile, log: Log) -> None:
    try:
        hf_hub_download(
            request.repo_id,
            file.path,
            revision=commit,
            local_dir=request.dest,
            cache_dir=request.dest / ".cache" / "huggingface" / "hub",
            token=_token(),
            library_name="ballast-fetch",
        )
    except Exception as e:
        raise classify(e, request, file.path) from None
    log(f"have {file.path}")


def _check_sizes(request: Request, files: list[choose.RepoFile]) -> int:
    """Total bytes on disk; a file whose size differs from the hub's listing is removed."""
    total = 0
    for f in files:
        path = request.dest / f.path
        size = path.stat().st_size
        if f.size is not None and size != f.size:
            path.unlink()
            raise permanent(
                f"size mismatch for {f.path} of {request.repo}: {size} bytes on disk, the hub "
                f"lists {f.size}; refused"
            )
        total += size
    return total


def _link_gguf(dest: Path, target: str) -> None:
    link = dest / GGUF_LINK
    if target == GGUF_LINK:
        return
    tmp = dest / f".{GGUF_LINK}.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


@dataclass(frozen=True)
class Resolved:
    """The commit a revision named when it was resolved, and that commit's files."""

    commit: str
    files: list[choose.RepoFile]


def fetch(request: Request, log: Log, resolved: Resolved) -> Result:
    """Download the request's files at ``resolved.commit`` into ``request.dest``."""
    disable_progress_bars()
    commit = resolved.commit
    files = plan(request, resolved.files)
    announced = sum(f.size or 0 for f in files)
    log(f"fetching {len(files)} files ({announced} bytes) into {request.dest}")
    workers = max(1, min(MAX_WORKERS, len(files)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        futures = [pool.submit(_download, request, commit, f, log) for f in files]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    total = _check_sizes(request, files)
    if request.gguf is not None:
        _link_gguf(request.dest, files[0].path)
    return Result(revision=commit, files=len(files), bytes=total)

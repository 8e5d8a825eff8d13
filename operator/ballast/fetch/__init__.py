"""``ballast fetch``: the model cache's loader, run by the loader Job (docs/cache-fetch.md).

``ballast fetch hf --repo OWNER/NAME [--revision REV] --dest DIR [--gguf QUANT]`` puts one
commit of a Hugging Face repository in DIR; ``ballast fetch url --url URL --dest DIR``
puts one GGUF file at ``DIR/model.gguf``. Both end by writing the completion marker
``DIR/.ballast-complete`` (last, atomically), print one JSON result line and copy it to
the termination log; a run whose request matches the marker does nothing. Exit codes:
0 success, 2 permanent failure (the Job fails at once), 1 transient (the Job retries).

This module is imported for every ``ballast`` command, so it stays light:
``huggingface_hub`` is imported only by :mod:`.hub`, when ``hf`` runs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from ballast.fetch.outcome import (
    EXIT_OK,
    EXIT_PERMANENT,
    EXIT_TRANSIENT,
    FetchError,
    Request,
    Result,
    completed,
    forget,
    mark_complete,
    one_line,
    permanent,
    termination_log,
    write_termination_log,
)

REPO_ID = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*")
HF_ATTEMPTS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The two sources of ``ballast fetch`` and their flags."""
    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    hf = sub.add_parser(
        "hf",
        help="one commit of a Hugging Face repository (HF_ENDPOINT, HF_TOKEN honoured)",
        description="Download a Hugging Face repository at one commit into DIR. Without "
        "--gguf: what vLLM/TGI load (safetensors preferred over other weight formats). With "
        "--gguf: the one GGUF file matching QUANT, linked as DIR/model.gguf.",
    )
    hf.add_argument("--repo", required=True, metavar="OWNER/NAME")
    hf.add_argument(
        "--revision", default="main", help="branch, tag or commit (default main), resolved once"
    )
    hf.add_argument("--gguf", metavar="QUANT", help="llama.cpp quant, e.g. Q4_K_M")
    url = sub.add_parser(
        "url",
        help="one GGUF file over http(s), resumed and size-checked, as DIR/model.gguf",
        description="Download one file to DIR/model.gguf with resume (HTTP Range) and a size check.",
    )
    url.add_argument("--url", required=True, metavar="URL")
    url.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="resumes in a row without progress before giving up with exit 1 (default 5)",
    )
    for p in (hf, url):
        p.add_argument("--dest", required=True, metavar="DIR", help="directory to fill")
        p.add_argument(
            "--termination-log",
            metavar="PATH",
            help="where to copy the outcome (default /dev/termination-log when mounted)",
        )


def _request(args: argparse.Namespace) -> Request:
    dest = Path(args.dest)
    if args.source == "hf":
        if not REPO_ID.fullmatch(args.repo) or ".." in args.repo:
            raise permanent(
                f"--repo {args.repo!r} is not a Hugging Face repository id (OWNER/NAME)"
            )
        if not args.revision.strip():
            raise permanent("--revision is empty")
        return Request(
            source="hf", dest=dest, repo=args.repo, revision=args.revision, gguf=args.gguf
        )
    if not re.match(r"https?://[^/\s]+", args.url):
        raise permanent(f"--url must be an http:// or https:// URL, not {args.url!r}")
    if args.retries < 0:
        raise permanent("--retries must not be negative")
    return Request(source="url", dest=dest, url=args.url, retries=args.retries)


def _log(line: str) -> None:
    print(f"fetch: {line}", file=sys.stderr, flush=True)


def _run(request: Request) -> Result:
    if request.source == "url":
        from ballast.fetch import direct

        return direct.fetch(request, _log, retries=request.retries)
    # hf_xet keeps its caches under HF_HOME (not writable in the Job's image): use the volume.
    os.environ.setdefault("HF_XET_CACHE", str(request.dest / ".cache" / "huggingface" / "xet"))
    try:
        from ballast.fetch import hub
    except ModuleNotFoundError as e:
        raise permanent(
            f"ballast fetch hf needs huggingface_hub ({e.name} is missing): "
            "pip install 'ballast[cache]'"
        ) from None

    # Resolved once: a retry in this run downloads the same commit even if the branch moved.
    resolved: hub.Resolved | None = None
    attempt = 1
    while True:
        try:
            if resolved is None:
                resolved = hub.resolve(request)
                _log(f"{request.repo}@{request.revision} is commit {resolved.commit}")
            return hub.fetch(request, _log, resolved)
        except FetchError as e:
            if e.code != EXIT_TRANSIENT or attempt >= HF_ATTEMPTS:
                raise
            _log(f"{e.message} (attempt {attempt} of {HF_ATTEMPTS})")
        time.sleep(2.0 ** (attempt - 1))
        attempt += 1


def _fill(request: Request) -> Result:
    done = completed(request)
    if done is not None:
        _log(f"{request.dest} is already complete")
        return done
    try:
        request.dest.mkdir(parents=True, exist_ok=True)
        forget(request)
    except OSError as e:
        raise permanent(f"cannot create {request.dest}: {e.strerror or e}") from None
    result = _run(request)
    try:
        mark_complete(request, result)
    except OSError as e:
        raise permanent(
            f"cannot write the completion marker in {request.dest}: {e.strerror or e}"
        ) from None
    return result


def _secrets() -> tuple[str, ...]:
    return tuple(
        v
        for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
        if (v := os.environ.get(k, "")) and len(v) >= 4
    )


def main(args: argparse.Namespace) -> int:
    log_path = termination_log(args.termination_log)
    try:
        result = _fill(_request(args))
    except FetchError as e:
        code, message = e.code, e.message
    except KeyboardInterrupt:
        code, message = EXIT_TRANSIENT, "interrupted"
    except Exception as e:  # a bug: say what, once, and let the Job retry
        code, message = EXIT_TRANSIENT, f"internal error: {type(e).__name__}: {e}"
    else:
        line = result.line()
        print(line, flush=True)
        if problem := write_termination_log(log_path, line):
            _log(problem)
        return EXIT_OK
    text = one_line(message, _secrets())
    print(f"error: {text}", file=sys.stderr, flush=True)
    if problem := write_termination_log(log_path, text):
        _log(problem)
    return code if code in (EXIT_PERMANENT, EXIT_TRANSIENT) else EXIT_TRANSIENT

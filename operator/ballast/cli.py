"""The ``ballast`` command: ``run | gateway | fetch | render | crd | validate``.

Exit codes: 0 success, 1 invalid LLMService input, 2 unusable input (unreadable
file, not YAML) or a usage error. No command prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from ballast import __version__
from ballast.api.manifests import Checked, ManifestError, check_document, load_documents

EXIT_OK, EXIT_INVALID, EXIT_UNUSABLE = 0, 1, 2

#: Subcommands implemented in their own packages: name -> (module, help).
#: Each module has ``add_arguments(parser)`` and ``main(args) -> int`` and imports only
#: light modules at import time (it is imported for every command).
DELEGATED: dict[str, tuple[str, str]] = {
    "run": ("ballast.controller.cli", "run the operator (kopf) against the cluster"),
    "gateway": ("ballast.gateway.cli", "serve the OpenAI-compatible gateway"),
    "fetch": ("ballast.fetch", "fill a model cache directory (the loader Job's command)"),
}


def _read_sources(paths: Sequence[str], stdin: TextIO) -> list[tuple[str, str]]:
    """(name, text) for every file, directory entry (*.yaml, *.yml, *.json) or ``-``."""
    out: list[tuple[str, str]] = []
    for raw in paths:
        if raw == "-":
            out.append(("<stdin>", stdin.read()))
            continue
        path = Path(raw)
        files = (
            sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml", ".json"})
            if path.is_dir()
            else [path]
        )
        for f in files:
            try:
                out.append((str(f), f.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                raise ManifestError(f"{f}: cannot read: {reason}") from None
    return out


def _check_all(paths: Sequence[str], stdin: TextIO) -> list[Checked]:
    results: list[Checked] = []
    for name, text in _read_sources(paths, stdin):
        results.extend(check_document(d) for d in load_documents(text, name))
    return results


def _checked_or_exit(args: argparse.Namespace, out: TextIO, err: TextIO) -> list[Checked] | int:
    """Check every input; on a problem print it and return the exit code."""
    try:
        results = _check_all(args.filename, sys.stdin)
    except ManifestError as e:
        print(f"error: {e}", file=err)
        return EXIT_UNUSABLE
    if not results:
        print("error: no documents found in " + ", ".join(args.filename), file=err)
        return EXIT_UNUSABLE
    if any(r.problems for r in results):
        for r in results:
            for line in r.lines():
                print(line, file=err if r.problems else out)
        return EXIT_INVALID
    return results


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    checked = _checked_or_exit(args, out, err)
    if isinstance(checked, int):
        return checked
    for r in checked:
        for line in r.lines():
            print(line, file=out)
    return EXIT_OK


def cmd_render(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    checked = _checked_or_exit(args, out, err)
    if isinstance(checked, int):
        return checked
    render = importlib.import_module("ballast.render")
    objects: list[dict[str, Any]] = []
    for r in checked:
        if r.service is not None:
            objects.extend(render.objects(r.service))
    if args.output == "json":
        json.dump(
            {"apiVersion": "v1", "kind": "List", "items": objects}, out, indent=2, sort_keys=True
        )
        out.write("\n")
    else:
        out.write(yaml.safe_dump_all(objects, sort_keys=True, explicit_start=True))
    return EXIT_OK


def cmd_crd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ballast.api.crd import crd_yaml

    text = crd_yaml()
    if args.output and args.output != "-":
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=err)
    else:
        out.write(text)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ballast", description="Kubernetes operator and gateway for LLM services."
    )
    parser.add_argument("--version", action="version", version=f"ballast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, (module, help_) in DELEGATED.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(delegate=module)
        _add_delegated_arguments(module, p)

    p = sub.add_parser("render", help="print the Kubernetes objects the controller would create")
    p.add_argument("-f", "--filename", action="append", required=True, help="file, directory or -")
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("crd", help="print (or write) the LLMService CustomResourceDefinition")
    p.add_argument("-o", "--output", help="file to write instead of stdout")
    p.set_defaults(func=cmd_crd)

    p = sub.add_parser("validate", help="check LLMService manifests offline")
    p.add_argument("-f", "--filename", action="append", required=True, help="file, directory or -")
    p.set_defaults(func=cmd_validate)
    return parser


def _add_delegated_arguments(module: str, parser: argparse.ArgumentParser) -> None:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if not e.name or not module.startswith(e.name):
            raise
        parser.set_defaults(delegate=None, missing=module)
        return
    mod.add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "missing", None):
        print(
            f"error: {args.command} is not available in this build ({args.missing})",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    if getattr(args, "delegate", None):
        mod = importlib.import_module(args.delegate)
        run: Callable[[argparse.Namespace], int] = mod.main
        return run(args)
    func: Callable[[argparse.Namespace, TextIO, TextIO], int] = args.func
    try:
        return func(args, sys.stdout, sys.stderr)
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""Reading LLMService manifests from YAML text and checking them, offline.

Used by ``ballast validate`` and ``ballast render``: the same documents, the
same messages. Reading is separated from checking so both can be tested without
files: :func:`load_documents` turns text into documents (or :class:`ManifestError`
for input that is not YAML), :func:`check_document` turns one document into a
:class:`Checked` result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from ballast.api.resource import API_VERSION, KIND, LLMService, Problem, SpecError, parse_llmservice


class ManifestError(Exception):
    """Input that cannot be read as YAML manifests at all (exit code 2)."""


@dataclass(frozen=True)
class Document:
    """One YAML document and where it came from."""

    source: str
    index: int
    body: Any


@dataclass(frozen=True)
class Checked:
    """The outcome of checking one document."""

    document: Document
    service: LLMService | None = None
    problems: list[Problem] = field(default_factory=list)
    skipped: str | None = None

    @property
    def label(self) -> str:
        body = self.document.body
        meta = body.get("metadata") if isinstance(body, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        kind = body.get("kind", "?") if isinstance(body, dict) else type(body).__name__
        return f"{kind}/{name}" if name else f"{kind} (document {self.document.index + 1})"

    def lines(self) -> Iterator[str]:
        """Human-readable lines: one summary, or one per problem."""
        where = f"{self.document.source}: {self.label}"
        if self.skipped is not None:
            yield f"{where}: skipped ({self.skipped})"
        elif self.problems:
            for p in self.problems:
                yield f"{where}: {p}"
        elif self.service is not None:
            svc = self.service
            backends = ", ".join(f"{b.name}={b.engine.value}" for b in svc.spec.backends)
            yield f"{where}: valid (model {svc.served_model_name}; backends {backends})"


def load_documents(text: str, source: str) -> list[Document]:
    """Every non-empty YAML document in ``text``; ManifestError when it is not YAML."""
    try:
        bodies = [b for b in yaml.safe_load_all(text) if b is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ManifestError(f"{source}: not valid YAML{where}: {problem}") from None
    docs: list[Document] = []
    for body in bodies:
        if (
            isinstance(body, dict)
            and body.get("kind") == "List"
            and isinstance(body.get("items"), list)
        ):
            docs.extend(
                Document(source, len(docs) + j, item) for j, item in enumerate(body["items"])
            )
        else:
            docs.append(Document(source, len(docs), body))
    return docs


def check_document(doc: Document) -> Checked:
    """Check one document: an LLMService is parsed; anything else is skipped."""
    body = doc.body
    if not isinstance(body, dict):
        return Checked(
            doc, problems=[Problem("", f"expected a mapping, got {type(body).__name__}")]
        )
    if body.get("kind") != KIND:
        return Checked(doc, skipped=f"not an {KIND}")
    if body.get("apiVersion") != API_VERSION:
        problem = Problem("apiVersion", f"expected {API_VERSION}, got {body.get('apiVersion')!r}")
        return Checked(doc, problems=[problem])
    try:
        return Checked(doc, service=parse_llmservice(body))
    except SpecError as e:
        return Checked(doc, problems=e.problems)

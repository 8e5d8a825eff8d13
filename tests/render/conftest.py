"""Shared inputs of the render tests: the examples, one service per engine, golden files."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ballast.api import LLMService
from ballast.api.manifests import check_document, load_documents
from tests.factories import SELF_HOSTED, backend, external, make_llmservice

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
GOLDENS = Path(__file__).parent / "goldens"
UPDATE_GOLDENS = os.environ.get("BALLAST_UPDATE_GOLDENS") == "1"
UID = "6c1f0b7e-2b9a-4d0e-9a51-3f1c2d4e5a6b"


def example_services(path: Path) -> list[LLMService]:
    """The LLMServices in one example file (every document must be valid)."""
    out = []
    for doc in load_documents(path.read_text(encoding="utf-8"), str(path)):
        checked = check_document(doc)
        assert not checked.problems, checked.problems
        if checked.service is not None:
            out.append(checked.service)
    return out


def engine_service(engine: str) -> LLMService:
    """One backend of ``engine`` (an external one for openai), owned by an object with a uid."""
    b = external(priority=0) if engine == "openai" else backend(engine)
    return make_llmservice(b, name=f"{engine}-demo", uid=UID)


ENGINES = (*SELF_HOSTED, "openai")

#: A cache asking for everything: created claim, pinned revision, a token.
CACHE = {
    "size": "40Gi",
    "storageClassName": "fast",
    "revision": "0123456789abcdef0123456789abcdef01234567",
    "tokenSecretRef": {"name": "hf", "key": "token"},
}


def cached_service(
    engine: str, cache: dict[str, object] | None = None, **fields: object
) -> LLMService:
    """One self-hosted backend of ``engine`` with a model cache."""
    b = backend(engine, cache=cache or CACHE, **fields)
    return make_llmservice(b, name=f"{engine}-cached", uid=UID)


def dump(objs: list[dict[str, object]]) -> str:
    """Serialize exactly as ``ballast render -o yaml`` does."""
    return yaml.safe_dump_all(objs, sort_keys=True, explicit_start=True)

"""Golden files: the exact objects per engine and per example, reviewed as diffs.

``make goldens`` (BALLAST_UPDATE_GOLDENS=1) rewrites them; review ``git diff
tests/render/goldens`` before committing: every changed line is a change to what
users' clusters receive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from ballast import render
from tests.factories import SELF_HOSTED
from tests.render.conftest import (
    ENGINES,
    EXAMPLES,
    GOLDENS,
    UPDATE_GOLDENS,
    cached_service,
    dump,
    engine_service,
    example_services,
)


def _engine_text(engine: str) -> str:
    return dump(render.objects(engine_service(engine)))


def _cached_text(engine: str) -> str:
    """A cached backend once its cache is filled (what serves), plus its claim and loader."""
    svc = cached_service(engine, scaling={"maxReplicas": 2})
    ready = {b.name: replace(render.cache.target(b), ready=True) for b in svc.spec.backends}
    return dump(render.objects(svc, caches=ready))


def _example_text(path: Path) -> str:
    return dump([o for svc in example_services(path) for o in render.objects(svc)])


CASES: dict[str, Callable[[], str]] = {
    **{f"engine-{e}.yaml": (lambda e=e: _engine_text(e)) for e in ENGINES},
    **{f"engine-{e}-cached.yaml": (lambda e=e: _cached_text(e)) for e in SELF_HOSTED},
    **{f"example-{p.stem}.yaml": (lambda p=p: _example_text(p)) for p in EXAMPLES},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_objects_match_the_golden_file(name: str) -> None:
    text = CASES[name]()
    golden = GOLDENS / name
    if UPDATE_GOLDENS:
        GOLDENS.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"{golden} is missing: run `make goldens` and review the diff"
    assert text == golden.read_text(encoding="utf-8"), (
        f"render output differs from {golden.name}: run `make goldens` and review `git diff`"
    )


def test_no_golden_file_is_orphaned() -> None:
    on_disk = {p.name for p in GOLDENS.glob("*.yaml")}
    assert on_disk <= set(CASES), f"golden files without a case: {sorted(on_disk - set(CASES))}"

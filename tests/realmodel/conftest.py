"""Fixtures of the real-model tier (marker `realmodel`, `make test-realmodel`).

`stack` (session): the control plane of the cluster tier, the process kubelet running
llamacpp pods as real `llama-server` processes, the real operator and gateway
(`tests/realmodel/stack.py`); `gemma`: the LLMService `gemma` with two llama.cpp tiers,
applied once and Ready. Missing control-plane binaries FAIL the tier (run `make
cluster-bin`); llama-server and the model are built or fetched on first use
(`make llama-bin` does it ahead). `BALLAST_SKIP_REALMODEL=1` skips the tier on purpose.
Every test under this directory is marked `realmodel`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.binaries import Binaries, BinariesMissing

from .stack import Missing, RealStack, llmservice

HERE = Path(__file__).resolve().parent
NAMESPACE = "realmodel"
NAME = "gemma"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in tests/realmodel/ with `realmodel`."""
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.realmodel)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealStack]:
    if os.environ.get("BALLAST_SKIP_REALMODEL") == "1":
        pytest.skip("BALLAST_SKIP_REALMODEL=1: real-model tier skipped on request")
    try:
        binaries = Binaries.from_cache()
    except BinariesMissing as err:
        pytest.fail(str(err), pytrace=False)
    try:
        real = RealStack(NAMESPACE, workdir=tmp_path_factory.mktemp("real"), binaries=binaries)
    except Missing as err:
        pytest.fail(str(err), pytrace=False)
    with real:
        yield real


@pytest.fixture(scope="session")
def gemma(stack: RealStack) -> str:
    """The LLMService `gemma` (primary and fallback llama.cpp tiers), Ready, both in route."""
    stack.apply(llmservice(NAME, NAMESPACE))
    stack.wait_ready(NAME, timeout=300)
    return NAME


@pytest.fixture(autouse=True)
def scraped(request: pytest.FixtureRequest) -> Iterator[None]:
    """Scrape the gateway and operator around every test that ran the stack, so the
    monitoring test can evaluate the dashboard over the whole run's traffic."""
    if "stack" not in request.fixturenames:
        yield
        return
    real: RealStack = request.getfixturevalue("stack")
    real.scrape()
    yield
    real.scrape()

"""Fixtures for the chart tests: the real `helm` binary (hack/k8s-tools.sh) and renders of
charts/ballast with the default values and with every option on (values-all.yaml)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ballast"
VALUES_ALL = Path(__file__).with_name("values-all.yaml")
NAMESPACE = "ballast-system"
RELEASE = "ballast"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Helm:
    """The helm binary; `helm(*args)` returns the finished process (never raises on exit code)."""

    binary: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, check=False, timeout=120
        )

    def template(
        self,
        *,
        values: Sequence[Path] = (),
        set_: Sequence[str] = (),
        set_json: Sequence[str] = (),
        namespace: str = NAMESPACE,
        release: str = RELEASE,
    ) -> subprocess.CompletedProcess[str]:
        args = ["template", release, str(CHART), "--namespace", namespace]
        for v in values:
            args += ["--values", str(v)]
        for s in set_:
            args += ["--set", s]
        for s in set_json:
            args += ["--set-json", s]
        return self(*args)

    def objects(self, **kwargs: Any) -> list[Obj]:
        """Render and parse; fails the test with helm's message when rendering fails."""
        out = self.template(**kwargs)
        if out.returncode != 0:
            pytest.fail(f"helm template failed:\n{out.stderr}")
        return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="session")
def helm() -> Helm:
    out = subprocess.run(
        [str(REPO / "hack" / "k8s-tools.sh")], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        pytest.fail(f"hack/k8s-tools.sh failed:\n{out.stderr}")
    return Helm(Path(out.stdout.strip().splitlines()[-1]) / "helm")


@pytest.fixture(scope="session")
def default_objects(helm: Helm) -> list[Obj]:
    return helm.objects()


@pytest.fixture(scope="session")
def all_objects(helm: Helm) -> list[Obj]:
    return helm.objects(values=[VALUES_ALL])


@pytest.fixture(scope="session", params=["default", "all"])
def rendered(request: pytest.FixtureRequest) -> list[Obj]:
    """Both renders, one after the other."""
    return request.getfixturevalue(f"{request.param}_objects")  # type: ignore[no-any-return]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Obj], kind: str, component: str) -> Obj:
    found = [
        o
        for o in of_kind(objects, kind)
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} of {component}, found {len(found)}"
    return found[0]


def container(objects: list[Obj], component: str) -> Obj:
    deployment = one(objects, "Deployment", component)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]

"""charts/ballast installed with the real `helm` into a test control plane: the
release's names (ServiceAccounts, their API user names) and the CLIs bound to a
plane of the test's own (`fresh_control_plane`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .binaries import REPO
from .controlplane import ControlPlane
from .tools import Tool

CHART = REPO / "charts" / "ballast"
CRD_NAME = "llmservices.ballast.dev"
CRD_PATH = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}"


def kubectl_for(plane: ControlPlane, tools: Path) -> Tool:
    """The real kubectl as the plane's admin."""
    return Tool(tools / "kubectl", plane.kubeconfig)


def helm_for(plane: ControlPlane, tools: Path, home: Path) -> Tool:
    """The real helm (v4) as the plane's admin, with its cache/config/data under `home`."""
    env = {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    return Tool(tools / "helm", plane.kubeconfig, env)


@dataclass(frozen=True)
class Release:
    """A release of charts/ballast. Its name must contain "ballast", so the chart's
    full name (the prefix of every object) is the release name itself."""

    name: str
    namespace: str

    def __post_init__(self) -> None:
        if "ballast" not in self.name:
            raise ValueError(f"release name {self.name!r} must contain 'ballast'")

    def serviceaccount(self, component: str) -> str:
        return f"{self.name}-{component}"

    def user(self, component: str) -> str:
        """The API user a component authenticates as with its ServiceAccount's token."""
        return f"system:serviceaccount:{self.namespace}:{self.serviceaccount(component)}"

    def install_args(self, chart: Path = CHART, *values: str) -> list[str]:
        """`helm install` arguments; `values` are `--set` expressions."""
        args = ["install", self.name, str(chart), "--namespace", self.namespace]
        args += ["--create-namespace"]
        for value in values:
            args += ["--set", value]
        return args

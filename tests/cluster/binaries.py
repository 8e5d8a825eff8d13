"""Where the control-plane binaries built by `hack/cluster/build.sh` live, and which
Kubernetes release they are: the `k8s.io/kubernetes` requirement in
hack/cluster/go.mod is the single source of the pinned version."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def kubernetes_version() -> str:
    """The pinned release: the k8s.io/kubernetes requirement in hack/cluster/go.mod."""
    for line in (REPO / "hack/cluster/go.mod").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "k8s.io/kubernetes" and fields[1].startswith("v"):
            return fields[1]
    raise RuntimeError("hack/cluster/go.mod does not require k8s.io/kubernetes")


class BinariesMissing(RuntimeError):
    """The control-plane binaries were not built."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the three binaries `hack/cluster/build.sh` produces."""

    etcd: Path
    apiserver: Path
    controller_manager: Path

    @classmethod
    def from_cache(cls, version: str | None = None) -> Binaries:
        """The cached build for `version` (default: the pinned one), or `BinariesMissing`."""
        version = version or kubernetes_version()
        base = Path(
            os.environ.get("BALLAST_CLUSTER_CACHE")
            or Path.home() / ".cache" / "ballast" / "cluster"
        )
        found = cls(
            etcd=base / version / "etcd",
            apiserver=base / version / "kube-apiserver",
            controller_manager=base / version / "kube-controller-manager",
        )
        missing = [str(p) for p in (found.etcd, found.apiserver, found.controller_manager)]
        missing = [p for p in missing if not os.access(p, os.X_OK)]
        if missing:
            raise BinariesMissing(
                f"control-plane binaries for Kubernetes {version} are not built "
                f"(missing: {', '.join(missing)}); run `make cluster-bin` "
                "(or set BALLAST_SKIP_CLUSTER=1 to skip this tier explicitly)"
            )
        return found

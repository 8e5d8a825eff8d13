"""The CRDs are gated templates: generated from crds/, switched by crds.enabled, kept on
uninstall by crds.keep."""

from __future__ import annotations

import yaml

from .conftest import REPO, Helm, Obj, of_kind

KEEP = "helm.sh/resource-policy"


def names(objects: list[Obj]) -> set[str]:
    return {o["metadata"]["name"] for o in of_kind(objects, "CustomResourceDefinition")}


def test_default_installs_the_llmservice_crd_kept_on_uninstall(default_objects: list[Obj]) -> None:
    assert names(default_objects) == {"llmservices.ballast.dev"}
    (crd,) = of_kind(default_objects, "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {KEEP: "keep"}


def test_the_chart_crd_is_the_generated_crd(default_objects: list[Obj]) -> None:
    source = yaml.safe_load((REPO / "crds" / "llmservices.ballast.dev.yaml").read_text())
    (crd,) = of_kind(default_objects, "CustomResourceDefinition")
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["labels"].items() >= source["metadata"]["labels"].items()


def test_crds_disabled_renders_no_crd(helm: Helm) -> None:
    objects = helm.objects(set_=["crds.enabled=false", "operator.replicaCount=2"])
    assert names(objects) == set()
    assert of_kind(objects, "Deployment")


def test_crds_keep_false_drops_the_annotation(helm: Helm) -> None:
    objects = helm.objects(set_=["crds.keep=false", "operator.replicaCount=2"])
    assert names(objects) == {"llmservices.ballast.dev"}
    for crd in of_kind(objects, "CustomResourceDefinition"):
        assert KEEP not in (crd["metadata"].get("annotations") or {})


def test_no_crd_but_ballast_s_own_even_with_several_operator_replicas(helm: Helm) -> None:
    on = helm.objects(set_=["operator.leaderElection.enabled=true", "operator.replicaCount=3"])
    assert names(on) == {"llmservices.ballast.dev"}  # a Lease needs no CRD (kopf peering did)

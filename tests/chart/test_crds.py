"""The CRDs are gated templates: generated from crds/, switched by crds.enabled, kept on
uninstall by crds.keep, with kopf's peering CRDs only where peering needs them."""

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
    objects = helm.objects(set_=["crds.keep=false", "operator.peering.enabled=true"])
    assert len(names(objects)) == 3
    for crd in of_kind(objects, "CustomResourceDefinition"):
        assert KEEP not in (crd["metadata"].get("annotations") or {})


def test_peering_crds_follow_peering_and_their_own_switch(helm: Helm) -> None:
    peering = {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    on = helm.objects(set_=["operator.peering.enabled=true"])
    assert names(on) == {"llmservices.ballast.dev", *peering}
    for crd in of_kind(on, "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"] == {KEEP: "keep"}
    off = helm.objects(set_=["operator.replicaCount=2", "crds.kopfPeering=false"])
    assert names(off) == {"llmservices.ballast.dev"}

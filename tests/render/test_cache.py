"""The model cache as rendered: claim, loader Job, and the serving pods that read it offline."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from ballast import render
from ballast.api import CACHE_MOUNT_PATH
from ballast.render.cache import CacheUse, cache_key, claim_name, target
from tests.factories import SELF_HOSTED, backend, make_llmservice
from tests.podsecurity import violations
from tests.render.conftest import CACHE, UID, cached_service
from tests.render.schema import all_schema_errors

Obj = dict[str, Any]


def by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def ready(svc: Any) -> dict[str, CacheUse]:
    return {b.name: replace(target(b), ready=True) for b in svc.spec.backends if b.cache}


def engine_container(dep: Obj) -> Obj:
    containers: list[Obj] = dep["spec"]["template"]["spec"]["containers"]
    return containers[0]


@pytest.mark.parametrize("engine", SELF_HOSTED)
@pytest.mark.parametrize("filled", [False, True], ids=["filling", "filled"])
def test_cached_objects_pass_the_schemas_and_the_restricted_profile(
    engine: str, filled: bool
) -> None:
    svc = cached_service(engine, scaling={"maxReplicas": 2})
    objs = render.objects(svc, caches=ready(svc) if filled else None)
    assert all_schema_errors(objs) == []
    job = by_kind(objs, "Job")[0]
    assert violations(job["spec"]["template"]["spec"]) == []


@pytest.mark.parametrize("engine", SELF_HOSTED)
def test_the_token_is_only_in_the_loader_job(engine: str) -> None:
    svc = cached_service(engine)
    objs = render.objects(svc, caches=ready(svc))
    holders = [o["kind"] for o in objs if '"hf"' in json.dumps(o) or "HF_TOKEN" in json.dumps(o)]
    assert holders == ["Job"]
    loader = engine_container(by_kind(objs, "Job")[0])
    token = [e for e in loader["env"] if e["name"] == "HF_TOKEN"]
    assert token == [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    ]


@pytest.mark.parametrize("engine", SELF_HOSTED)
def test_serving_pods_mount_the_key_read_only_and_load_from_it(engine: str) -> None:
    svc = cached_service(engine)
    b = svc.spec.backends[0]
    objs = render.objects(svc, caches=ready(svc))
    dep = by_kind(objs, "Deployment")[0]
    pod = dep["spec"]["template"]["spec"]
    c = engine_container(dep)
    mount = next(m for m in c["volumeMounts"] if m["name"] == "model-cache")
    assert mount == {
        "name": "model-cache",
        "mountPath": CACHE_MOUNT_PATH,
        "subPath": cache_key(b),
        "readOnly": True,
    }
    volume = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert volume["persistentVolumeClaim"] == {"claimName": claim_name(b), "readOnly": True}
    env = {e["name"]: e.get("value") for e in c["env"]}
    args = c["args"]
    assert b.model not in " ".join(args) or engine == "tgi"  # never the hub id to download
    if engine == "vllm":
        assert args[args.index("--model") + 1] == CACHE_MOUNT_PATH
        assert env["HF_HUB_OFFLINE"] == "1"
    elif engine == "tgi":
        assert args[args.index("--model-id") + 1] == CACHE_MOUNT_PATH
        assert args[args.index("--served-model-name") + 1] == b.model
        assert env["HF_HUB_OFFLINE"] == "1"
    elif engine == "llamacpp":
        assert args[args.index("--model") + 1] == f"{CACHE_MOUNT_PATH}/model.gguf"
        assert "--hf-repo" not in args
    else:
        assert env["OLLAMA_MODELS"] == CACHE_MOUNT_PATH
        assert "initContainers" not in pod  # nothing is pulled by a serving pod
    assert dep["metadata"]["annotations"]["ballast.dev/cache-served"] == (
        f"{claim_name(b)}/{cache_key(b)}"
    )


@pytest.mark.parametrize("scaling", [None, {"minReplicas": 2, "maxReplicas": 4}])
def test_no_serving_pod_and_no_hpa_until_the_cache_is_filled(scaling: Obj | None) -> None:
    fields = {"scaling": scaling} if scaling else {"replicas": 3}
    svc = cached_service("vllm", **fields)
    filling = render.objects(svc)
    dep = by_kind(filling, "Deployment")[0]
    assert dep["spec"]["replicas"] == 0
    assert by_kind(filling, "HorizontalPodAutoscaler") == []
    assert "annotations" not in dep["metadata"] or "ballast.dev/cache-served" not in dep[
        "metadata"
    ].get("annotations", {})
    filled = render.objects(svc, caches=ready(svc))
    dep = by_kind(filled, "Deployment")[0]
    if scaling:
        assert "replicas" not in dep["spec"]  # the HPA owns it
        assert by_kind(filled, "HorizontalPodAutoscaler")[0]["spec"]["minReplicas"] == 2
    else:
        assert dep["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("engine", "model", "command"),
    [
        ("vllm", "org/m", ["ballast", "fetch", "hf", "--repo", "org/m"]),
        ("tgi", "org/m", ["ballast", "fetch", "hf", "--repo", "org/m"]),
        (
            "llamacpp",
            "org/m-GGUF",
            ["ballast", "fetch", "hf", "--repo", "org/m-GGUF", "--gguf", "Q4_K_M"],
        ),
        (
            "llamacpp",
            "org/m-GGUF:q8_0",
            ["ballast", "fetch", "hf", "--repo", "org/m-GGUF", "--gguf", "q8_0"],
        ),
        (
            "llamacpp",
            "https://h.example/m.gguf",
            ["ballast", "fetch", "url", "--url", "https://h.example/m.gguf"],
        ),
    ],
)
def test_the_loader_command_per_model_kind(engine: str, model: str, command: list[str]) -> None:
    svc = make_llmservice(backend(engine, model=model, cache={"size": "1Gi"}), uid=UID)
    job = by_kind(render.objects(svc, loader_image="reg.example/ballast:1"), "Job")[0]
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "reg.example/ballast:1"
    assert c["command"] == [*command, "--dest", f"/model-cache/{cache_key(svc.spec.backends[0])}"]


def test_the_ollama_loader_pulls_with_its_own_image_into_the_volume() -> None:
    svc = make_llmservice(backend("ollama", cache={"size": "1Gi"}), uid=UID)
    job = by_kind(render.objects(svc), "Job")[0]
    c = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert c["image"].startswith("ollama/ollama:")
    assert env["OLLAMA_MODELS"] == f"/model-cache/{cache_key(svc.spec.backends[0])}"
    assert env["BALLAST_OLLAMA_MODEL"] == svc.spec.backends[0].model


def test_two_services_with_the_same_model_share_one_claim_and_one_job() -> None:
    a = cached_service("vllm")
    b = make_llmservice(backend("vllm", cache=CACHE), name="other", uid="u-2")
    shared_a = {(o["kind"], o["metadata"]["name"]): o for o in render.objects(a)}
    shared_b = {(o["kind"], o["metadata"]["name"]): o for o in render.objects(b)}
    for kind in ("PersistentVolumeClaim", "Job"):
        (key,) = [k for k in shared_a if k[0] == kind]
        assert key in shared_b
        hashes = [
            s[key]["metadata"]["annotations"]["ballast.dev/applied-hash"]
            for s in (shared_a, shared_b)
        ]
        assert hashes[0] == hashes[1]  # whoever created it, the same object
        refs = shared_a[key]["metadata"]["ownerReferences"]
        assert [r["controller"] for r in refs] == [False]


def test_a_new_revision_is_a_new_directory_claim_and_job() -> None:
    one = cached_service("vllm")
    two = cached_service("vllm", cache={**CACHE, "revision": "feedface"})
    names = [
        {
            o["metadata"]["name"]
            for o in render.objects(s)
            if o["kind"] in ("Job", "PersistentVolumeClaim")
        }
        for s in (one, two)
    ]
    assert names[0].isdisjoint(names[1])
    assert cache_key(one.spec.backends[0]) != cache_key(two.spec.backends[0])


def test_an_existing_claim_is_used_and_never_rendered() -> None:
    svc = cached_service("vllm", cache={"existingClaim": "team-models"})
    objs = render.objects(svc, caches=ready(svc))
    assert by_kind(objs, "PersistentVolumeClaim") == []
    job_volumes = by_kind(objs, "Job")[0]["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "model-cache",
        "persistentVolumeClaim": {"claimName": "team-models"},
    } in job_volumes
    pod = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]
    assert {
        "name": "model-cache",
        "persistentVolumeClaim": {"claimName": "team-models", "readOnly": True},
    } in pod["volumes"]


def test_the_created_claim_asks_for_the_size_class_and_mode() -> None:
    svc = cached_service("vllm", cache={**CACHE, "accessMode": "ReadWriteOnce"})
    (pvc,) = by_kind(render.objects(svc), "PersistentVolumeClaim")
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "40Gi"}},
        "storageClassName": "fast",
        "volumeMode": "Filesystem",
    }


def test_own_volumes_are_mounted_into_the_engine() -> None:
    svc = make_llmservice(
        backend(
            "vllm",
            volumes=[{"name": "templates", "configMap": {"name": "chat-templates"}}],
            volumeMounts=[{"name": "templates", "mountPath": "/templates", "readOnly": True}],
        ),
        uid=UID,
    )
    objs = render.objects(svc)
    dep = by_kind(objs, "Deployment")[0]
    assert {"name": "templates", "configMap": {"name": "chat-templates"}} in dep["spec"][
        "template"
    ]["spec"]["volumes"]
    assert {"name": "templates", "mountPath": "/templates", "readOnly": True} in engine_container(
        dep
    )["volumeMounts"]
    assert all_schema_errors(objs) == []


def test_a_permanent_loader_failure_fails_the_job_at_once() -> None:
    job = by_kind(render.objects(cached_service("vllm")), "Job")[0]
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules == [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "fetch", "operator": "In", "values": [2]},
        }
    ]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"

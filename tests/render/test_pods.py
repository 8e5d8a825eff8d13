"""Pods: probes, rollout strategy, security, volumes, env and scheduling pass-through."""

from __future__ import annotations

from typing import Any

import pytest

from ballast import render
from ballast.api import Engine
from ballast.engines import info
from tests.factories import SELF_HOSTED, backend, make_llmservice, vllm
from tests.podsecurity import violations

Obj = dict[str, Any]


def pod(**fields: Any) -> Obj:
    engine = fields.pop("engine", "vllm")
    svc = make_llmservice(backend(engine, "primary", **fields))
    spec: Obj = render.deployment(svc, svc.spec.backends[0])["spec"]["template"]["spec"]
    return spec


def engine_container(spec: Obj) -> Obj:
    (container,) = spec["containers"]
    return container


def test_startup_probe_budget_is_the_startup_timeout_and_there_is_no_initial_delay() -> None:
    c = engine_container(pod(health={"periodSeconds": 7, "startupTimeoutSeconds": 100}))
    assert c["startupProbe"]["failureThreshold"] == 15  # ceil(100 / 7)
    assert c["startupProbe"]["periodSeconds"] == 7
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "initialDelaySeconds" not in c[probe]


def test_readiness_and_liveness_come_from_health_with_engine_default_path() -> None:
    c = engine_container(pod(health={"failureThreshold": 4, "timeoutSeconds": 2}))
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["failureThreshold"] == 4
        assert c[probe]["timeoutSeconds"] == 2
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    custom = engine_container(pod(health={"path": "/ready"}))
    assert custom["readinessProbe"]["httpGet"]["path"] == "/ready"


@pytest.mark.parametrize(
    ("resources", "surge", "unavailable"),
    [
        ({"limits": {"nvidia.com/gpu": 1}}, 0, 1),
        ({"requests": {"amd.com/gpu": 1}}, 0, 1),
        ({"requests": {"cpu": "4", "memory": "8Gi", "hugepages-2Mi": "1Gi"}}, 1, 0),
        (None, 1, 0),
    ],
)
def test_accelerator_backends_never_surge_and_cpu_backends_never_dip(
    resources: Obj | None, surge: int, unavailable: int
) -> None:
    fields = {"resources": resources} if resources else {}
    svc = make_llmservice(vllm(**fields))
    strategy = render.deployment(svc, svc.spec.backends[0])["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
    }


@pytest.mark.parametrize("engine", SELF_HOSTED)
def test_pods_meet_the_restricted_profile_except_for_documented_exceptions(engine: str) -> None:
    spec = pod(engine=engine)
    exceptions = info(Engine(engine)).pod_security_exceptions
    assert violations(spec, allow=exceptions) == []
    # Each documented exception is real: without it, the pod would be flagged.
    for rule in exceptions:
        assert any(v.startswith(f"{rule}:") for v in violations(spec)), rule
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False


def test_only_tgi_runs_as_root_and_it_is_documented() -> None:
    documented = {e: info(Engine(e)).pod_security_exceptions for e in SELF_HOSTED}
    assert documented == {"vllm": (), "tgi": ("runAsNonRoot",), "ollama": (), "llamacpp": ()}
    assert pod(engine="vllm")["securityContext"]["runAsUser"] == 1000
    assert "runAsUser" not in pod(engine="tgi")["securityContext"]


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_gpu_engines_get_a_memory_backed_dev_shm(engine: str) -> None:
    spec = pod(engine=engine)
    assert {"name": "shm", "emptyDir": {"medium": "Memory"}} in spec["volumes"]
    assert {"name": "shm", "mountPath": "/dev/shm"} in engine_container(spec)["volumeMounts"]


@pytest.mark.parametrize("engine", SELF_HOSTED)
def test_every_mounted_volume_exists_and_home_is_writable(engine: str) -> None:
    spec = pod(engine=engine)
    volumes = {v["name"] for v in spec["volumes"]}
    for c in spec["containers"] + spec.get("initContainers", []):
        assert {m["name"] for m in c["volumeMounts"]} <= volumes
    c = engine_container(spec)
    env = {e["name"]: e.get("value") for e in c["env"]}
    writable = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/tmp" in writable
    if "HOME" in env:
        assert env["HOME"] in writable


def test_user_env_is_passed_through_and_overrides_an_engine_default() -> None:
    secret = {"secretKeyRef": {"name": "hf", "key": "token"}}
    c = engine_container(
        pod(
            env=[
                {"name": "HF_TOKEN", "valueFrom": secret},
                {"name": "VLLM_NO_USAGE_STATS", "value": "0"},
            ]
        )
    )
    assert c["env"][-2:] == [
        {"name": "HF_TOKEN", "valueFrom": secret},
        {"name": "VLLM_NO_USAGE_STATS", "value": "0"},
    ]
    names = [e["name"] for e in c["env"]]
    assert len(names) == len(set(names))  # server-side apply rejects duplicate keys


def test_resources_and_scheduling_are_passed_through() -> None:
    fields = {
        "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "32Gi"}, "requests": {"cpu": "4"}},
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "runtimeClassName": "nvidia",
    }
    spec = pod(**fields)
    assert engine_container(spec)["resources"] == fields["resources"]
    assert spec["nodeSelector"] == fields["nodeSelector"]
    assert spec["tolerations"] == fields["tolerations"]
    assert spec["affinity"] == fields["affinity"]
    assert spec["runtimeClassName"] == "nvidia"


def test_custom_image_replaces_the_pinned_default() -> None:
    assert engine_container(pod())["image"] == info(Engine.VLLM).image
    assert (
        engine_container(pod(image="registry.local/vllm:rocm"))["image"]
        == "registry.local/vllm:rocm"
    )


@pytest.mark.parametrize("engine", SELF_HOSTED)
def test_pinned_images_are_never_latest(engine: str) -> None:
    image = info(Engine(engine)).image
    assert image is not None
    assert ":" in image.rsplit("/", 1)[-1]
    assert not image.endswith(":latest")


def test_metrics_engines_get_scrape_annotations_and_ollama_does_not() -> None:
    def annotations(engine: str) -> Obj:
        svc = make_llmservice(backend(engine))
        meta: Obj = render.deployment(svc, svc.spec.backends[0])["spec"]["template"]["metadata"]
        return meta["annotations"]

    assert annotations("vllm")["prometheus.io/port"] == "8000"
    assert annotations("vllm")["prometheus.io/path"] == "/metrics"
    assert "prometheus.io/scrape" not in annotations("ollama")

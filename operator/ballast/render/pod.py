"""The pod template of a self-hosted backend: engine container, probes, volumes, security.

Choices that hold for every engine (engine-specific ones live in
:mod:`ballast.engines`):

* Probes come from ``health`` (engine defaults for the path). A ``startupProbe``
  gives the model ``startupTimeoutSeconds`` to load (failureThreshold =
  ceil(startupTimeoutSeconds / periodSeconds)); readiness and liveness only start
  after it, so there is never a long ``initialDelaySeconds`` and never a kill loop
  during a slow load.
* Security: seccomp RuntimeDefault, no privilege escalation, every capability
  dropped, and runAsNonRoot with a numeric UID unless the engine documents an
  exception. No ServiceAccount token is mounted (engines never call the API) and
  ``enableServiceLinks`` is off: Kubernetes would otherwise inject variables such
  as ``VLLM_PORT=tcp://…`` for a Service named ``vllm``, which vLLM reads as its
  own setting and fails on.
* ``terminationGracePeriodSeconds`` is 60: long enough for in-flight requests to
  finish once the endpoint is gone, short enough for a node drain.
* Prometheus scrape annotations when the engine serves metrics (on the ``http``
  port).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

from ballast.api import CACHE_MOUNT_PATH, CACHE_VOLUME, Backend, EnvVar, Health, LLMService
from ballast.engines import EngineInfo, Launch, info, launch
from ballast.naming import labels
from ballast.render.meta import SPEC_HASH_ANNOTATION, Obj, digest

TERMINATION_GRACE_SECONDS: Final = 60
PORT_NAME: Final = "http"


def workload_labels(svc: LLMService, backend: Backend) -> dict[str, str]:
    """Labels of a backend's objects and pods (a superset of its selector labels)."""
    return labels(svc.name, "backend", backend.name, name=backend.engine.value)


def _probes(facts: EngineInfo, health: Health | None) -> Obj:
    h = health if health is not None else Health()
    path = h.path or facts.health_path

    def probe(failure_threshold: int) -> Obj:
        return {
            "httpGet": {"path": path, "port": PORT_NAME},
            "periodSeconds": h.period_seconds,
            "timeoutSeconds": h.timeout_seconds,
            "failureThreshold": failure_threshold,
        }

    return {
        "startupProbe": probe(math.ceil(h.startup_timeout_seconds / h.period_seconds)),
        "readinessProbe": probe(h.failure_threshold),
        "livenessProbe": probe(h.failure_threshold),
    }


def _env(engine_env: Sequence[tuple[str, str]], user_env: Sequence[EnvVar] | None) -> list[Obj]:
    """Engine env, then the user's; a later entry replaces an earlier one of the same name."""
    merged: dict[str, Obj] = {}
    for name, value in engine_env:
        merged[name] = {"name": name, "value": value}
    for var in user_env or ():
        merged.pop(var.name, None)  # re-insert at the end: user entries keep their order
        merged[var.name] = var.to_json()
    return list(merged.values())


def _pod_security(facts: EngineInfo) -> Obj:
    ctx: Obj = {"seccompProfile": {"type": "RuntimeDefault"}}
    if facts.run_as_user is not None:
        uid = facts.run_as_user
        ctx.update(runAsNonRoot=True, runAsUser=uid, runAsGroup=uid)
    return ctx


def _container_security(facts: EngineInfo) -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": facts.read_only_root_filesystem,
    }


def _base_container(facts: EngineInfo, backend: Backend, name: str, env: list[Obj]) -> Obj:
    """What the engine and init containers share: image, env, resources, mounts, security."""
    out: Obj = {
        "name": name,
        "image": backend.image or facts.image,
        "env": env,
        "securityContext": _container_security(facts),
        "volumeMounts": [{"name": s.name, "mountPath": s.mount_path} for s in facts.scratch],
    }
    resources = backend.resources.to_json() if backend.resources is not None else {}
    if resources:
        out["resources"] = resources
    return out


def _containers(backend: Backend, facts: EngineInfo, run: Launch, cache_key: str | None) -> Obj:
    engine = _base_container(facts, backend, backend.engine.value, _env(run.env, backend.env))
    engine["args"] = list(run.args)
    if cache_key is not None:
        engine["volumeMounts"].append(
            {
                "name": CACHE_VOLUME,
                "mountPath": CACHE_MOUNT_PATH,
                "subPath": cache_key,
                "readOnly": True,
            }
        )
    engine["volumeMounts"] += [dict(m) for m in backend.volume_mounts or ()]
    engine["ports"] = [{"name": PORT_NAME, "containerPort": facts.port, "protocol": "TCP"}]
    engine.update(_probes(facts, backend.health))
    out: Obj = {"containers": [engine]}
    if run.init is not None:
        init = _base_container(facts, backend, run.init.name, _env(run.init.env, backend.env))
        init["command"] = list(run.init.command)
        out["initContainers"] = [init]
    return out


def _scheduling(backend: Backend) -> Obj:
    out: Obj = {}
    if backend.node_selector:
        out["nodeSelector"] = dict(backend.node_selector)
    if backend.tolerations:
        out["tolerations"] = [dict(t) for t in backend.tolerations]
    if backend.affinity:
        out["affinity"] = dict(backend.affinity)
    if backend.runtime_class_name:
        out["runtimeClassName"] = backend.runtime_class_name
    return out


def _annotations(facts: EngineInfo) -> dict[str, str]:
    if facts.metrics_path is None:
        return {}
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(facts.port),
        "prometheus.io/path": facts.metrics_path,
    }


def pod_template(svc: LLMService, backend: Backend, cache: tuple[str, str] | None = None) -> Obj:
    """The Deployment's pod template, with ``ballast.dev/spec-hash`` over everything in it.

    ``cache``: (claim, key) of the filled cache directory the pods serve, mounted
    read-only with the engine told to load from it offline.
    """
    facts = info(backend.engine)
    run = launch(
        backend.engine,
        backend.model,
        svc.served_model_name,
        tuple(backend.args or ()),
        CACHE_MOUNT_PATH if cache is not None else None,
    )
    spec: Obj = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(facts),
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        **_containers(backend, facts, run, cache[1] if cache is not None else None),
        **_scheduling(backend),
    }
    volumes: list[Obj] = [
        {"name": s.name, "emptyDir": {"medium": s.medium} if s.medium else {}}
        for s in facts.scratch
    ]
    if cache is not None:
        claim = {"claimName": cache[0], "readOnly": True}
        volumes.append({"name": CACHE_VOLUME, "persistentVolumeClaim": claim})
    volumes += [dict(v) for v in backend.volumes or ()]
    if volumes:
        spec["volumes"] = volumes
    metadata: dict[str, Any] = {
        "labels": workload_labels(svc, backend),
        "annotations": _annotations(facts),
    }
    metadata["annotations"][SPEC_HASH_ANNOTATION] = digest({"metadata": metadata, "spec": spec})
    return {"metadata": metadata, "spec": spec}

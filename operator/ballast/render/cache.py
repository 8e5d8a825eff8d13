"""The model cache of a backend: its claim, its loader Job, and what the engine pod mounts.

One cache directory per **key**, a digest of (engine, model, requested revision),
on a PersistentVolumeClaim: the user's ``existingClaim``, or one Ballast creates,
named by the key and the storage it asks for (``ballast-cache-<digest>``). One
loader Job per (claim, key) fills the directory once (``ballast-fetch-<digest>``).
Two LLMServices (or two backends) asking for the same key and storage share the
claim and the Job: both are *shared children*, each user holding a
non-controller ownerReference, so the garbage collector deletes them when the last
user is gone and never while one remains. Their ``ballast.dev/applied-hash`` leaves
owners out, so it is the same whoever created them.

The Job's pod is the only place the Hugging Face token appears. It runs
``ballast fetch`` (Ballast's own image) for Hugging Face ids and GGUF URLs, or
``ollama pull`` (the backend's Ollama image) with ``OLLAMA_MODELS`` on the volume.
The loader writes a completion marker last; exit code 2 means a permanent failure
(not found, unauthorized, size mismatch), which fails the Job at once through its
``podFailurePolicy``, while other failures are retried by the Job controller with
its own exponential backoff (``backoffLimit``).

Engine pods mount the key's directory read-only (``subPath``) at
:data:`~ballast.api.CACHE_MOUNT_PATH` and run offline. A Deployment whose cache is
not filled yet is rendered with 0 replicas and no HPA (:class:`CacheUse`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ballast import DEFAULT_IMAGE
from ballast.api import CACHE_VOLUME, Backend, Engine, LLMService
from ballast.engines import llamacpp, ollama
from ballast.engines.base import NON_ROOT_UID
from ballast.render.meta import Obj, digest, owner_reference, shared_child

#: The loader's image when the operator was not told its own (``BALLAST_LOADER_IMAGE``).
DEFAULT_LOADER_IMAGE: Final = DEFAULT_IMAGE
#: Where the loader mounts the whole claim.
LOADER_MOUNT: Final = "/model-cache"
#: Label naming the cache key on claims and Jobs.
CACHE_KEY_LABEL: Final = "ballast.dev/cache-key"
#: Deployment annotation: the ``<claim>/<key>`` its pods serve, set once that cache is filled.
SERVED_ANNOTATION: Final = "ballast.dev/cache-served"
#: Pod retries of a transient loader failure (the Job controller backs off 10 s, 20 s, … 6 min).
LOADER_BACKOFF_LIMIT: Final = 4
#: The loader's exit code for a failure a retry cannot fix.
PERMANENT_EXIT: Final = 2
#: Environment of the backend passed on to the loader (a hub mirror, proxies).
LOADER_ENV_PASSED: Final = frozenset(
    {
        "HF_ENDPOINT",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    }
)


@dataclass(frozen=True)
class CacheUse:
    """Which cache directory a backend's pods mount, and whether it is filled."""

    claim: str
    key: str
    ready: bool = False

    @property
    def served(self) -> str:
        """The value of :data:`SERVED_ANNOTATION` for this directory."""
        return f"{self.claim}/{self.key}"

    @property
    def job(self) -> str:
        """The loader Job that fills this directory."""
        return job_name(self.claim, self.key)


def cache_key(backend: Backend) -> str:
    """Digest of what decides the bytes: engine, model and the requested revision."""
    revision = backend.cache.revision if backend.cache is not None else None
    return digest({"engine": backend.engine.value, "model": backend.model, "revision": revision})


def claim_name(backend: Backend) -> str:
    """The claim of ``backend``'s cache: the user's, or Ballast's for this key and storage."""
    cache = backend.cache
    if cache is None:
        raise ValueError(f"backend {backend.name} has no cache")
    if cache.existing_claim is not None:
        return cache.existing_claim
    storage = {
        "key": cache_key(backend),
        "size": str(cache.size),
        "class": cache.storage_class_name,
        "mode": cache.access_mode.value if cache.access_mode else "ReadWriteMany",
    }
    return f"ballast-cache-{digest(storage)}"


def job_name(claim: str, key: str) -> str:
    """The loader Job filling directory ``key`` of ``claim``."""
    return f"ballast-fetch-{digest({'claim': claim, 'key': key})}"


def target(backend: Backend) -> CacheUse:
    """The directory ``backend``'s spec asks for (not known to be filled)."""
    return CacheUse(claim_name(backend), cache_key(backend))


def _labels(key: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "ballast",
        "app.kubernetes.io/component": "model-cache",
        "app.kubernetes.io/managed-by": "ballast",
        "app.kubernetes.io/part-of": "ballast",
        CACHE_KEY_LABEL: key,
    }


def _shared_meta(svc: LLMService, name: str, key: str) -> Obj:
    meta: Obj = {"name": name, "namespace": svc.namespace, "labels": _labels(key)}
    owner = owner_reference(svc)
    if owner is not None:
        meta["ownerReferences"] = [{**owner, "controller": False}]
    return meta


def claim(svc: LLMService, backend: Backend) -> Obj | None:
    """The PersistentVolumeClaim Ballast creates; None with ``existingClaim`` (never touched)."""
    cache = backend.cache
    if cache is None or cache.existing_claim is not None:
        return None
    mode = cache.access_mode.value if cache.access_mode else "ReadWriteMany"
    spec: Obj = {
        "accessModes": [mode],
        "resources": {"requests": {"storage": str(cache.size)}},
        "volumeMode": "Filesystem",
    }
    if cache.storage_class_name:
        spec["storageClassName"] = cache.storage_class_name
    meta = _shared_meta(svc, claim_name(backend), cache_key(backend))
    return shared_child("v1", "PersistentVolumeClaim", meta, spec=spec)


def _loader_run(backend: Backend, dest: str) -> tuple[list[str], list[Obj]]:
    """(command, env) of the loader container for ``backend``'s model."""
    cache = backend.cache
    assert cache is not None
    if backend.engine is Engine.OLLAMA:
        env = [
            {"name": "OLLAMA_MODELS", "value": dest},
            {"name": "OLLAMA_HOST", "value": "127.0.0.1:11434"},
            {"name": ollama.MODEL_ENV, "value": backend.model},
            {"name": "BALLAST_CACHE_DIR", "value": dest},
        ]
        return ["/bin/sh", "-c", ollama.LOADER_SCRIPT], env
    if llamacpp.model_flag(backend.model) == "--model-url":
        return ["ballast", "fetch", "url", "--url", backend.model, "--dest", dest], []
    command = ["ballast", "fetch", "hf"]
    if backend.engine is Engine.LLAMACPP:
        repo, quant = llamacpp.hf_source(backend.model)
        command += ["--repo", repo, "--gguf", quant]
    else:
        command += ["--repo", backend.model]
    if cache.revision:
        command += ["--revision", cache.revision]
    return [*command, "--dest", dest], []


def loader_job(svc: LLMService, backend: Backend, image: str = DEFAULT_LOADER_IMAGE) -> Obj | None:
    """The Job that fills ``backend``'s cache directory once; None without a cache."""
    cache = backend.cache
    if cache is None:
        return None
    use = target(backend)
    command, env = _loader_run(backend, f"{LOADER_MOUNT}/{use.key}")
    env += [
        {"name": "HOME", "value": "/tmp"},
        {"name": "HF_HOME", "value": "/tmp/hf"},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
    ]
    env += [v.to_json() for v in backend.env or () if v.name in LOADER_ENV_PASSED]
    if cache.token_secret_ref is not None:
        ref = cache.token_secret_ref
        env.append(
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        )
    ollama_image = backend.image or ollama.INFO.image
    container: Obj = {
        "name": "fetch",
        "image": ollama_image if backend.engine is Engine.OLLAMA else image,
        "command": command,
        "env": env,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": CACHE_VOLUME, "mountPath": LOADER_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod: Obj = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NON_ROOT_UID,
            "runAsGroup": NON_ROOT_UID,
            "fsGroup": NON_ROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": use.claim}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    spec: Obj = {
        "backoffLimit": LOADER_BACKOFF_LIMIT,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": "fetch",
                        "operator": "In",
                        "values": [PERMANENT_EXIT],
                    },
                }
            ]
        },
        "template": {"metadata": {"labels": _labels(use.key)}, "spec": pod},
    }
    meta = _shared_meta(svc, use.job, use.key)
    return shared_child("batch/v1", "Job", meta, spec=spec)


def cache_objects(
    svc: LLMService, backend: Backend, image: str = DEFAULT_LOADER_IMAGE
) -> list[Obj]:
    """The claim (when Ballast creates it) and the loader Job of ``backend``'s cache."""
    return [o for o in (claim(svc, backend), loader_job(svc, backend, image)) if o is not None]

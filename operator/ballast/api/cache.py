"""``backends[].cache`` and the backend's own ``volumes``/``volumeMounts``.

A cache downloads a self-hosted backend's model once per (engine, model,
revision) into a PersistentVolumeClaim, with a loader Job, and every replica then
serves it read-only and offline. Either Ballast creates the claim (``size``,
optionally ``storageClassName`` and ``accessMode``) or the user names one of their
own (``existingClaim``), which Ballast never resizes or deletes. Cross-field rules
are in :mod:`ballast.api.rules`; what the controller does with it is in
docs/cache.md.

``volumes`` and ``volumeMounts`` are the user's own core/v1 Volumes and
VolumeMounts (a PVC, a CSI driver, a ConfigMap of chat templates), passed to the
engine container as they are. The names and paths Ballast uses itself are
reserved (:data:`RESERVED_VOLUME_NAMES`, :data:`RESERVED_MOUNT_PATHS`) and the
API server says so when one is taken.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final

from pydantic import AfterValidator, Field, StringConstraints, WithJsonSchema

from ballast.api.ruled import RuledModel
from ballast.api.rules import RESERVED_MOUNT_PATHS, RESERVED_VOLUME_NAMES, Scope
from ballast.api.types import DNS1123_LABEL, Quantity, SecretKeyRef

#: Where engine pods mount their cache directory (read-only).
CACHE_MOUNT_PATH: Final = "/ballast/model"
#: The name of the cache volume in engine pods and loader Jobs.
CACHE_VOLUME: Final = "model-cache"

_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: A git revision: a commit sha, a branch or a tag (Hugging Face accepts all three).
_REVISION = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"


class CacheAccessMode(StrEnum):
    """How the claim Ballast creates may be mounted."""

    READ_WRITE_MANY = "ReadWriteMany"
    READ_WRITE_ONCE = "ReadWriteOnce"


class Cache(RuledModel):
    """A model cache: the weights downloaded once into a volume, served read-only and offline."""

    rule_scope: ClassVar[Scope] = "cache"

    size: Quantity | None = Field(
        default=None,
        description=(
            'Size of the PersistentVolumeClaim Ballast creates, e.g. "40Gi": the model\'s files '
            "plus headroom. Required unless existingClaim is set."
        ),
    )
    storage_class_name: (
        Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=_SUBDOMAIN)] | None
    ) = Field(
        default=None,
        description="StorageClass of the claim Ballast creates. Unset: the cluster default.",
    )
    access_mode: CacheAccessMode | None = Field(
        default=None,
        description=(
            "ReadWriteMany (default: every replica on any node mounts it) or ReadWriteOnce "
            "(one node: the loader and every replica must be scheduled there)."
        ),
    )
    existing_claim: (
        Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=_SUBDOMAIN)] | None
    ) = Field(
        default=None,
        description=(
            "A PersistentVolumeClaim of your own in the LLMService's namespace to cache into "
            "(pre-filled, air-gapped, shared). Ballast never resizes or deletes it. Excludes "
            "size, storageClassName and accessMode."
        ),
    )
    revision: (
        Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=_REVISION)] | None
    ) = Field(
        default=None,
        description=(
            "The model revision (a commit sha, branch or tag) to download. Unset: the loader "
            "resolves the repository's main branch once and status.backends[].cache.revision "
            "records the commit, so every replica serves the same bytes. A changed revision "
            "fills a new directory, then rolls the pods."
        ),
    )
    token_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description=(
            "Secret key holding a Hugging Face token for gated or private models. Only the "
            "loader Job sees it; serving pods never carry it."
        ),
    )


def _named(kind: str, required: tuple[str, ...]) -> Any:
    """A core/v1 object passed through as is, whose ``name`` (and ``required``) CEL can read."""
    properties: dict[str, Any] = {
        "name": {
            "type": "string",
            "description": f"Name of the {kind} (DNS-1123 label).",
            "maxLength": 63,
            "pattern": DNS1123_LABEL,
        },
    }
    if "mountPath" in required:
        properties["mountPath"] = {
            "type": "string",
            "description": "Path in the engine container to mount the volume at.",
            "minLength": 1,
            "maxLength": 4096,
        }

    def check(value: dict[str, Any]) -> dict[str, Any]:
        for key in required:
            if not isinstance(value.get(key), str) or not value[key]:
                raise ValueError(f"a {kind} needs {key}")
        return value

    return Annotated[
        dict[str, Any],
        AfterValidator(check),
        WithJsonSchema(
            {
                "type": "object",
                "required": list(required),
                "properties": properties,
                "x-kubernetes-preserve-unknown-fields": True,
            }
        ),
    ]


#: A core/v1 Volume (validated in full by the API server when the Deployment is applied).
Volume = _named("volume", ("name",))
#: A core/v1 VolumeMount into the engine container.
VolumeMount = _named("volumeMount", ("name", "mountPath"))

__all__ = [
    "CACHE_MOUNT_PATH",
    "CACHE_VOLUME",
    "RESERVED_MOUNT_PATHS",
    "RESERVED_VOLUME_NAMES",
    "Cache",
    "CacheAccessMode",
    "Volume",
    "VolumeMount",
]

"""Shared field types of the API: Kubernetes-flavoured scalars and pass-through objects.

Each type carries the JSON schema the CRD needs (int-or-string quantities,
objects whose content Kubernetes validates elsewhere) so the CRD generator does
not have to special-case them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic.alias_generators import to_camel

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

#: A Kubernetes resource quantity ("1", "500m", "16Gi") or a plain integer.
Quantity = Annotated[
    int | Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY_PATTERN)],
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
        }
    ),
]

#: An object passed through to Kubernetes untouched (validated there, not here).
PassThrough = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]

Label = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS1123_LABEL)]
ShortString = Annotated[str, StringConstraints(max_length=253)]


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=False,
    )

    def to_json(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset optionals omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SecretKeyRef(ApiModel):
    """A key inside a Secret in the LLMService's namespace."""

    name: Label = Field(description="Name of the Secret, in the same namespace as the LLMService.")
    key: Annotated[
        str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    ] = Field(description="Key inside the Secret whose value is the credential.")


class EnvVar(ApiModel):
    """An environment variable for the engine container (core/v1 EnvVar)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        description="Name of the environment variable."
    )
    value: Annotated[str, StringConstraints(max_length=65536)] | None = Field(
        default=None, description="Literal value. Mutually exclusive with valueFrom."
    )
    value_from: PassThrough | None = Field(
        default=None,
        description=(
            "Source of the value (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef), "
            "as in core/v1 EnvVarSource."
        ),
    )


class Resources(ApiModel):
    """Compute resources of the engine container (core/v1 ResourceRequirements)."""

    limits: dict[str, Quantity] | None = Field(
        default=None,
        description='Maximum resources, e.g. {"nvidia.com/gpu": 1, "memory": "32Gi"}.',
    )
    requests: dict[str, Quantity] | None = Field(
        default=None,
        description="Minimum resources the scheduler reserves. Defaults to limits when unset.",
    )

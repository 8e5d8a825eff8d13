"""Official Kubernetes schemas (PyPI kubernetes-validate), strict mode, with cached validators.

``kubernetes_validate.validate`` re-reads two JSON files per call; the property
test checks hundreds of objects, so validators are built once per (version,
kind). The schemas and the registry are exactly those ``validate`` uses.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv
from referencing import Registry, Resource

#: The oldest Kubernetes Ballast supports and the newest the schemas cover.
VERSIONS = ("1.30", kv.major_minor(kv.latest_version()))


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    full = next(v for v in kv.all_versions() if kv.major_minor(v) == version)
    folder = f"kubernetes-json-schema/v{full}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = kv.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", version)
    defs = kv.schema_contents(f"{folder}/_definitions.json", version)
    registry: Registry[Any] = Resource.from_contents(defs) @ (
        Resource.from_contents(schema) @ Registry()
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_errors(obj: Mapping[str, Any], version: str) -> list[str]:
    """Every strict-schema error of ``obj`` for Kubernetes ``version``, as ``path: message``."""
    validator = _validator(version, obj["kind"], obj["apiVersion"])
    return [
        f"{obj['kind']}/{obj['metadata']['name']} {'.'.join(map(str, e.path))}: {e.message}"
        for e in validator.iter_errors(dict(obj))
    ]


def all_schema_errors(objs: list[dict[str, Any]]) -> list[str]:
    """Schema errors of every object against every version in :data:`VERSIONS`."""
    return [f"[{v}] {err}" for o in objs for v in VERSIONS for err in schema_errors(o, v)]

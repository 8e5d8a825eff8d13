"""What the API server does with an LLMService, re-enacted offline for tests.

Defaulting from the CRD's structural schema, strict field validation (unknown
fields, as ``kubectl apply --validate=strict`` asks for), JSON-schema checks of
the ``openAPIV3Schema``, and execution of every ``x-kubernetes-validations``
CEL rule with a real CEL implementation (cel-python). Paths are written like
``spec.backends[0].url`` so they compare with :mod:`ballast.api` problems.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import celpy
import jsonschema

Schema = dict[str, Any]


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def apply_defaults(schema: Schema, obj: Any) -> Any:
    """Structural defaulting: fill missing properties that have a ``default``, recursively."""
    obj = copy.deepcopy(obj)
    _default(schema, obj)
    return obj


def _default(schema: Schema, obj: Any) -> None:
    if isinstance(obj, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in obj and "default" in sub:
                obj[name] = copy.deepcopy(sub["default"])
            if name in obj:
                _default(sub, obj[name])
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            _default(schema["items"], item)


def unknown_fields(schema: Schema, obj: Any, path: str = "") -> Iterator[str]:
    """Paths of fields the schema does not declare (strict field validation)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            if props is not None and key in props:
                yield from unknown_fields(props[key], value, join(path, key))
            elif isinstance(extra, dict):
                yield from unknown_fields(extra, value, join(path, key))
            elif props is not None:
                yield join(path, key)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            yield from unknown_fields(schema["items"], item, join(path, i))


def schema_errors(schema: Schema, obj: Any) -> list[str]:
    """Paths of JSON-schema violations of ``obj`` (the whole object) against ``schema``."""
    validator = jsonschema.Draft7Validator(schema)
    out = []
    for err in validator.iter_errors(obj):
        path = ""
        for part in err.absolute_path:
            path = join(path, part)
        if err.validator == "required":  # the API server names the missing field itself
            missing = [k for k in err.validator_value if k not in err.instance]
            out.extend(join(path, k) for k in missing)
        else:
            out.append(path)
    return out


_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def _program(rule: str) -> Any:
    if rule not in _PROGRAMS:
        _PROGRAMS[rule] = _ENV.program(_ENV.compile(rule))
    return _PROGRAMS[rule]


def cel_violations(schema: Schema, obj: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, message) for each CEL rule that evaluates false, deepest last."""
    if isinstance(obj, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in obj:
                yield from cel_violations(sub, obj[name], join(path, name))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            yield from cel_violations(schema["items"], item, join(path, i))
    for rule in schema.get("x-kubernetes-validations", []):
        result = _program(rule["rule"]).evaluate({"self": celpy.json_to_cel(obj)})
        if not bool(result):
            yield path + rule.get("fieldPath", ""), rule["message"]


def structural_problems(schema: Schema, path: str = "") -> Iterator[str]:
    """Ways in which ``schema`` is not a Kubernetes structural schema (or misses our rules)."""
    if "$ref" in schema or "$defs" in schema:
        yield f"{path}: $ref/$defs are not allowed"
    int_or_string = schema.get("x-kubernetes-int-or-string")
    if not schema.get("type") and not int_or_string:
        yield f"{path}: no type"
    if int_or_string and schema.get("anyOf") != [{"type": "integer"}, {"type": "string"}]:
        yield f"{path}: int-or-string needs anyOf integer/string"
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema and not int_or_string:
            yield f"{path}: {key} outside the int-or-string pattern"
    if "properties" in schema and "additionalProperties" in schema:
        yield f"{path}: properties and additionalProperties together"
    if schema.get("type") == "string" and "maxLength" not in schema and "format" not in schema:
        yield f"{path}: string without maxLength"
    if schema.get("type") == "array" and "maxItems" not in schema:
        yield f"{path}: array without maxItems"
    for name, sub in schema.get("properties", {}).items():
        if not sub.get("description"):
            yield f"{join(path, name)}: no description"
        yield from structural_problems(sub, join(path, name))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from structural_problems(schema[key], f"{path}.{key}")

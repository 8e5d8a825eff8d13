"""Generate the LLMService CustomResourceDefinition from the pydantic models.

pydantic's JSON schema is close to what Kubernetes wants but not the same: the
API server needs a *structural* schema (every node typed, no ``$ref``, optional
fields without ``null`` branches, no ``additionalProperties: false`` beside
``properties``), bounded strings where CEL reads them, and the
``x-kubernetes-*`` extensions. :func:`crd` does that translation and attaches the
cross-field rules from :mod:`ballast.api.rules`.
"""

from __future__ import annotations

from typing import Any

import yaml

from ballast.api.balancing import LoadBalancing
from ballast.api.cache import Cache
from ballast.api.resource import API_VERSION, GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from ballast.api.rules import Scope, rules_for
from ballast.api.spec import Backend, LLMServiceSpec, Metric, Scaling
from ballast.api.status import LLMServiceStatus

Schema = dict[str, Any]

#: Schema titles (pydantic model names) whose object carries the rules of a scope.
_RULE_SCOPES: dict[str, Scope] = {
    Backend.__name__: "backend",
    Scaling.__name__: "scaling",
    Metric.__name__: "metric",
    LLMServiceSpec.__name__: "spec",
    LoadBalancing.__name__: "loadBalancing",
    Cache.__name__: "cache",
}

#: Defaults pydantic cannot put into a JSON schema (factories); the API server applies them.
_FACTORY_DEFAULTS: dict[tuple[str, str], Any] = {
    ("LLMServiceSpec", "fallback"): {},
    ("Fallback", "circuitBreaker"): {},
    ("Fallback", "retryOn"): ["connect-failure", "5xx", "429", "timeout"],
}

_DROP_KEYS = {"title", "$defs"}


class _Converter:
    """Inline ``$ref``s and rewrite one pydantic schema into a structural one."""

    def __init__(self, defs: dict[str, Schema]) -> None:
        self.defs = defs

    def convert(self, node: Schema, owner: str | None = None) -> Schema:
        node = self._resolve(node)
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            node = self._drop_null_branch(node)
        out: Schema = {k: v for k, v in node.items() if k not in _DROP_KEYS}
        if out.get("default", 0) is None:
            del out["default"]
        if out.get("additionalProperties") is False:
            del out["additionalProperties"]
        if "enum" in out and not out.get("x-kubernetes-int-or-string"):
            out.setdefault("type", "string")
            out["maxLength"] = max(len(str(v)) for v in out["enum"])
        if "const" in out:
            out = {**out, "enum": [out.pop("const")], "type": "string"}
        if "properties" in out:
            out["properties"] = {
                name: self._property(name, sub, node.get("title", owner or ""))
                for name, sub in out["properties"].items()
            }
            scope = _RULE_SCOPES.get(node.get("title", ""))
            if scope:
                out["x-kubernetes-validations"] = [r.as_validation() for r in rules_for(scope)]
        if isinstance(out.get("items"), dict):
            out["items"] = self.convert(out["items"])
        if isinstance(out.get("additionalProperties"), dict):
            out["additionalProperties"] = self.convert(out["additionalProperties"])
        if out.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
        return _ordered(out)

    def _property(self, name: str, sub: Schema, owner: str) -> Schema:
        description = sub.get("description")
        prop = self.convert(sub, owner)
        if description:
            prop["description"] = description
        factory = _FACTORY_DEFAULTS.get((owner, name))
        if factory is not None:
            prop["default"] = factory
        return prop

    def _resolve(self, node: Schema) -> Schema:
        ref = node.get("$ref")
        if ref is None:
            return node
        target = self.defs[ref.rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return self._resolve(merged)

    def _drop_null_branch(self, node: Schema) -> Schema:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {node}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return {**self._resolve(branches[0]), **rest}


_FIRST = ("type", "description", "required")
_LAST = ("properties", "items", "additionalProperties", "x-kubernetes-validations")


def _ordered(node: Schema) -> Schema:
    """Keys in a reader-friendly, stable order: type and description first, children last."""
    middle = sorted(k for k in node if k not in _FIRST and k not in _LAST)
    return {k: node[k] for k in (*_FIRST, *middle, *_LAST) if k in node}


def object_schema(model: type[LLMServiceSpec] | type[LLMServiceStatus]) -> Schema:
    """The structural openAPIV3 schema of a spec or status model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _Converter(raw.get("$defs", {})).convert(raw)


def openapi_schema() -> Schema:
    """The whole ``openAPIV3Schema`` of the LLMService CRD."""
    spec = object_schema(LLMServiceSpec)
    spec["description"] = LLMServiceSpec.__doc__ or ""
    status = _without_defaults(object_schema(LLMServiceStatus))
    status["description"] = LLMServiceStatus.__doc__ or ""
    return {
        "type": "object",
        "description": (
            "LLMService declares one model served by one or more backends (self-hosted engines "
            "or external OpenAI-compatible APIs), how each scales, and how traffic fails over."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            # the API server forbids anything on metadata but its type
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def _without_defaults(node: Schema) -> Schema:
    """Status is written whole by the controller; the API server must not invent parts of it."""
    out = {k: v for k, v in node.items() if k != "default"}
    if "properties" in out:
        out["properties"] = {k: _without_defaults(v) for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _without_defaults(out[key])
    return out


PRINTER_COLUMNS: list[Schema] = [
    {
        "name": "Model",
        "type": "string",
        "jsonPath": ".status.servedModelName",
        "description": "Model name clients send",
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "In route",
        "type": "string",
        "jsonPath": ".status.backendsInRoute",
        "description": "Backends in the route / all",
    },
    {
        "name": "Cache",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="CacheReady")].reason',
        "description": "Model cache: Ready, Downloading, DownloadFailed or ClaimPending",
        "priority": 1,
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd() -> Schema:
    """The LLMService CustomResourceDefinition as a plain object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "ballast", "app.kubernetes.io/part-of": "ballast"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["ballast", "ai"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML committed in ``crds/`` (stable key order, no aliases)."""
    header = (
        "# Generated by `ballast crd` from the pydantic models in operator/ballast/api.\n"
        "# Do not edit: run `make generate`.\n"
    )
    body = yaml.dump(crd(), Dumper=_NoAliasDumper, sort_keys=False, width=100)
    return header + body


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


__all__ = ["API_VERSION", "PRINTER_COLUMNS", "crd", "crd_yaml", "openapi_schema"]

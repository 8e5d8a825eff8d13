"""Pure pieces of API-server semantics: label selectors, merge patch, JSON patch.

* Label selectors follow the documented grammar (``a=b``, ``a==b``, ``a!=b``,
  ``a``, ``!a``, ``a in (x,y)``, ``a notin (x,y)``, comma = AND).
* :func:`merge_patch` is RFC 7386 JSON Merge Patch, what the API server does for
  ``application/merge-patch+json``: objects merge recursively, ``null`` deletes a
  key, anything else (lists included) replaces.
* :func:`json_patch` is RFC 6902; a failed ``test`` operation or a bad path is a
  422, as the API server answers.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any

import jsonpatch

from tests.emulator.errors import ApiError

Obj = dict[str, Any]
Matcher = Callable[[Mapping[str, str]], bool]

_SET_RE = re.compile(r"^\s*(!?[\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(!?)([\w./-]+)\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> Matcher:
    if m := _SET_RE.match(text):
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _EQ_RE.match(text):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS_RE.match(text):
        negate, key = m.group(1) == "!", m.group(2)
        return lambda labels: (key in labels) != negate
    raise ApiError(400, "BadRequest", f"unable to parse requirement: {text!r}")


def label_matcher(selector: str | None) -> Matcher:
    """A predicate over an object's labels; an empty selector matches everything."""
    requirements = [_requirement(part) for part in _split(selector or "")]
    return lambda labels: all(req(labels) for req in requirements)


def field_matcher(selector: str | None) -> Callable[[Obj], bool]:
    """``metadata.name`` / ``metadata.namespace`` equality field selectors (all kinds support these)."""
    checks: list[tuple[str, str, bool]] = []
    for part in _split(selector or ""):
        m = _EQ_RE.match(part)
        if m is None or m.group(1) not in ("metadata.name", "metadata.namespace"):
            raise ApiError(400, "BadRequest", f"field selector not supported: {part!r}")
        checks.append((m.group(1).split(".")[1], m.group(3), m.group(2) != "!="))

    def match(obj: Obj) -> bool:
        meta = obj.get("metadata", {})
        return all((meta.get(field) == value) == equal for field, value, equal in checks)

    return match


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: the result of applying ``patch`` to ``target`` (neither is modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Obj, ops: Any) -> Obj:
    """RFC 6902 applied to a copy of ``target``; failures are 422 Invalid."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
    try:
        result: Obj = jsonpatch.apply_patch(target, ops, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
        raise ApiError(422, "Invalid", f"the JSON patch cannot be applied: {e}") from None
    return result

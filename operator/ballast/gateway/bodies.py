"""Reading a request body once and rewriting its ``model`` with the least work.

The body is parsed once (to validate it and read ``model``). The rewrite then splices the
new name into the original bytes when the key can be located unambiguously (exactly one
``"model"`` token, followed by the value just parsed), so every other field reaches the
engine byte for byte and large prompts are not re-serialized. Otherwise the parsed
document is serialized again (same JSON value, possibly different spacing). A top-level
key spelled with escapes (``"mod\\u0065l"``) next to a nested ``"model"`` of the same value
is the one input the splice would misread; the result is still a request for a model this
gateway serves, so nothing is exposed by it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_KEY = b'"model"'
_SPACE = b" \t\r\n"


class BodyError(ValueError):
    """A body that is not a JSON object with a string ``model``."""


@dataclass(frozen=True)
class ParsedBody:
    raw: bytes
    doc: dict[str, Any]
    model: str


def parse_body(raw: bytes) -> ParsedBody:
    """The JSON object in ``raw`` and its ``model``; :class:`BodyError` otherwise."""
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise BodyError(f"request body is not valid JSON: {e}") from None
    except RecursionError:
        raise BodyError("request body is nested too deeply") from None
    if not isinstance(doc, dict):
        raise BodyError("request body must be a JSON object")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise BodyError("you must provide a model parameter")
    return ParsedBody(raw, doc, model)


def with_model(body: ParsedBody, model: str) -> bytes:
    """``body`` with its ``model`` replaced; the original bytes when the name is the same."""
    if model == body.model:
        return body.raw
    spliced = splice(body.raw, body.model, model)
    if spliced is not None:
        return spliced
    doc = dict(body.doc)
    doc["model"] = model
    return json.dumps(doc, ensure_ascii=False).encode()


def splice(raw: bytes, old: str, new: str) -> bytes | None:
    """``raw`` with the value ``old`` of its only ``"model"`` key replaced by ``new``; None
    when the key is not there exactly once or is not followed by ``old``."""
    at = raw.find(_KEY)
    if at < 0 or raw.find(_KEY, at + len(_KEY)) >= 0:
        return None
    pos = _skip_space(raw, at + len(_KEY))
    if raw[pos : pos + 1] != b":":
        return None
    pos = _skip_space(raw, pos + 1)
    for spelled in _spellings(old):
        if raw.startswith(spelled, pos):
            return raw[:pos] + _spellings(new)[-1] + raw[pos + len(spelled) :]
    return None


@lru_cache(maxsize=4096)
def _spellings(name: str) -> tuple[bytes, ...]:
    """The JSON spellings of a model name: ASCII-escaped, then (if different) raw UTF-8."""
    escaped = json.dumps(name).encode()
    raw = json.dumps(name, ensure_ascii=False).encode()
    return (escaped,) if raw == escaped else (escaped, raw)


def _skip_space(raw: bytes, pos: int) -> int:
    while pos < len(raw) and raw[pos] in _SPACE:
        pos += 1
    return pos

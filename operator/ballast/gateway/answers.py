"""Reading an answer on its way to the client: the served model's name, usage, first token.

The client asked for a served model (``llama-3.1-8b``); the engine or provider answers with
its own name (``meta-llama/Llama-3.1-8B-Instruct``, ``gpt-4o-mini-2024-07-18``). The
top-level ``model`` of a JSON answer, and of every server-sent event of a stream, is
rewritten to the name the client sent, by splicing the new value into the original bytes:
everything else reaches the client byte for byte (an answer that already names the served
model is not touched at all). The upstream's own name is kept for a response header.

From the same reading come the token counts (``usage.prompt_tokens`` and
``usage.completion_tokens`` of a JSON answer, or of the stream's usage event when the
client asked for ``stream_options.include_usage``) and, for streams, the moment of the
first token: the first event whose choice carries generated text (``delta.content``,
``delta.reasoning_content``, ``delta.tool_calls`` or a completion's ``text``), not the
role-only event some engines send first.

What is left as it is: a line of a stream that is not a one-line JSON ``data:`` event, a
JSON answer larger than the gateway's buffer (it streams through untouched: the header
still names the upstream's model, its tokens are not counted), and error answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ballast.gateway.bodies import splice

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]


def top_level(text: str) -> dict[str, tuple[int, int, Any]] | None:
    """Each top-level key of the JSON object ``text`` with its value's span and value;
    None when ``text`` is not one JSON object."""
    try:
        pos = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
        if text[pos : pos + 1] != "{":
            return None
        fields: dict[str, tuple[int, int, Any]] = {}
        pos = _SPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
        if text[pos : pos + 1] == "}":
            return fields if not text[pos + 1 :].strip() else None
        while True:
            if text[pos : pos + 1] != '"':
                return None
            key, pos = _scanstring(text, pos + 1)
            pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
            if text[pos : pos + 1] != ":":
                return None
            pos = _SPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
            value, end = _DECODER.raw_decode(text, pos)
            fields[key] = (pos, end, value)
            pos = _SPACE.match(text, end).end()  # type: ignore[union-attr]
            sep = text[pos : pos + 1]
            if sep == "}":
                return fields if not text[pos + 1 :].strip() else None
            if sep != ",":
                return None
            pos = _SPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
    except (ValueError, RecursionError):
        return None


@lru_cache(maxsize=1024)
def _spelled(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


@dataclass
class Reading:
    """What one answer said about itself, filled as it passes."""

    #: The served model the client asked for (what ``model`` is rewritten to).
    served: str
    #: The model the upstream named in its answer (None until seen).
    upstream_model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: ``time.perf_counter()`` of the first generated token of a stream.
    first_token: float | None = None

    def document(self, raw: bytes) -> bytes:
        """A whole JSON answer: read, and its ``model`` rewritten (the same bytes otherwise)."""
        doc = _object(raw)
        return raw if doc is None else self.read(raw, doc)

    def read(self, raw: bytes, doc: dict[str, Any]) -> bytes:
        """One JSON object ``raw`` (an answer, or a stream event's data) already parsed as
        ``doc``: its usage noted, its ``model`` rewritten. The new name is spliced where the
        only ``"model"`` token of the bytes is, else where the top-level scan finds the key."""
        usage = doc.get("usage")
        if isinstance(usage, dict):
            self._usage(usage)
        name = doc.get("model")
        if not isinstance(name, str):
            return raw
        if self.upstream_model is None:
            self.upstream_model = name
        if name == self.served:
            return raw
        spliced = splice(raw, name, self.served)
        if spliced is not None:
            return spliced
        return self._rewrite_scanned(raw)

    def _rewrite_scanned(self, raw: bytes) -> bytes:
        """The top-level ``model`` located by scanning (``"model"`` also appears nested)."""
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return raw
        fields = top_level(text)
        model = fields.get("model") if fields is not None else None
        if model is None or not isinstance(model[2], str):
            return raw
        start, end, _ = model
        return (text[:start] + _spelled(self.served) + text[end:]).encode()

    def _usage(self, usage: dict[str, Any]) -> None:
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if _count(prompt):
            self.prompt_tokens = prompt
        if _count(completion):
            self.completion_tokens = completion


def _object(raw: bytes) -> dict[str, Any] | None:
    """``raw`` parsed by json's C decoder when it is one JSON object, else None."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _has_token(doc: dict[str, Any]) -> bool:
    choices = doc.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if choice.get("text"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls")
        ):
            return True
    return False


class EventStream:
    """Server-sent events passing through, line by line: each one-line ``data:`` JSON
    event is read (and its ``model`` rewritten); a partial line waits for its end."""

    def __init__(self, reading: Reading, clock: Any) -> None:
        self.reading, self.clock = reading, clock
        self._rest = b""

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of ``chunk`` that can go to the client now (complete lines)."""
        data = self._rest + chunk if self._rest else chunk
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        if not cut:
            return b""
        if b"data:" not in data:
            return data[:cut]
        lines = data[:cut].split(b"\n")
        changed = False
        for i, line in enumerate(lines):
            if line.startswith(b"data:"):
                new = self._event(line)
                if new is not line:
                    lines[i], changed = new, True
        return b"\n".join(lines) if changed else data[:cut]

    def flush(self) -> bytes:
        """What is left at the end of the stream (a last line without its newline)."""
        rest, self._rest = self._rest, b""
        if rest.startswith(b"data:"):
            return self._event(rest)
        return rest

    def _event(self, line: bytes) -> bytes:
        cr = line.endswith(b"\r")
        payload = line[5 : len(line) - cr]
        if payload.startswith(b" "):
            payload = payload[1:]
        if not payload.startswith(b"{"):
            return line  # [DONE], or not JSON
        doc = _object(payload)
        if doc is None:
            return line
        reading = self.reading
        if reading.first_token is None and _has_token(doc):
            reading.first_token = self.clock()
        out = reading.read(payload, doc)
        if out is payload:
            return line
        return line[: len(line) - cr - len(payload)] + out + (b"\r" if cr else b"")

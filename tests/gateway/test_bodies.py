"""Parsing a request once and rewriting ``model`` with everything else byte-identical."""

from __future__ import annotations

import json

import pytest

from ballast.api import RetryOn
from ballast.gateway.bodies import BodyError, parse_body, with_model
from ballast.gateway.failures import FailureKind, kind_of_status, retryable


def test_same_name_passes_the_original_bytes() -> None:
    raw = b'{"model":"m","x":1}'
    assert with_model(parse_body(raw), "m") is raw


def test_splice_keeps_every_other_byte() -> None:
    raw = b'{ "messages": [{"content": "say \\"model\\": \\u00e9"}],\n  "model" :  "chat", "n": 1.0000 }'
    out = with_model(parse_body(raw), "llama/3-8b")
    assert out == raw.replace(b'"chat"', b'"llama/3-8b"')


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "chat", "metadata": {"model": "chat"}}',  # ambiguous: two model keys
        b'{"model": "ch\\u0061t", "x": 1}',  # value spelled with an escape
        b'{"tags": ["model"], "model": "chat"}',  # "model" also as a value
    ],
)
def test_ambiguous_bodies_are_reserialized_correctly(raw: bytes) -> None:
    doc = json.loads(with_model(parse_body(raw), "new"))
    original = json.loads(raw)
    assert doc == original | {"model": "new"}


@pytest.mark.parametrize("raw", [b"", b"[1]", b"{", b'{"model": ""}', b'{"model": null}', b"\xff"])
def test_invalid_bodies_are_rejected(raw: bytes) -> None:
    with pytest.raises(BodyError):
        parse_body(raw)


def test_failure_kinds_and_retry_policy() -> None:
    assert kind_of_status(200) is None
    assert kind_of_status(404) is FailureKind.CLIENT_ERROR
    assert kind_of_status(429) is FailureKind.TOO_MANY_REQUESTS
    assert kind_of_status(503) is FailureKind.SERVER_ERROR
    assert not retryable(FailureKind.CLIENT_ERROR, list(RetryOn))
    assert retryable(FailureKind.STREAM_BROKEN, [RetryOn.SERVER_ERROR])
    assert not retryable(FailureKind.TOO_MANY_REQUESTS, [RetryOn.SERVER_ERROR])

"""Child names and labels: valid, stable, collision-free."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from ballast.naming import backend_name, label_value, labels, routes_name

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,120}[a-z0-9])?", fullmatch=True)
LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


def test_short_names_are_kept_as_designed() -> None:
    assert backend_name("chat", "primary") == "chat-primary"
    assert routes_name("chat") == "chat-routes"


@given(SUBDOMAIN, LABEL)
def test_names_are_valid_dns1035_labels_within_63(service: str, backend: str) -> None:
    for name in (backend_name(service, backend), routes_name(service)):
        assert len(name) <= 63
        assert DNS1035.match(name), name
    assert backend_name(service, backend) == backend_name(service, backend)


def test_long_names_differ_by_a_stable_hash() -> None:
    a = backend_name("x" * 60, "primary")
    b = backend_name("x" * 60, "primarz")
    assert a != b
    assert a[:50] == b[:50]
    assert backend_name("8b.chat", "gpu").startswith("x-8b-chat-gpu")


def test_labels_carry_service_and_backend() -> None:
    got = labels("chat", "backend", "primary", name="vllm")
    assert got["ballast.dev/service"] == "chat"
    assert got["ballast.dev/backend"] == "primary"
    assert got["app.kubernetes.io/managed-by"] == "ballast"
    assert len(label_value("a" * 200)) <= 63

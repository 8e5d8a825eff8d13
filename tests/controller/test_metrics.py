"""The operator's per-backend gauges follow the spec: removed backends and services leave."""

from __future__ import annotations

from ballast.controller.metrics import Metrics


def series(m: Metrics) -> dict[tuple[str, ...], float]:
    out = {}
    for family in m.registry.collect():
        for s in family.samples:
            if s.name == "ballast_backend_in_route":
                key = (s.labels["namespace"], s.labels["service"], s.labels["backend"])
                out[key] = s.value
    return out


def test_each_backend_has_its_in_route_series_until_it_or_its_service_goes() -> None:
    m = Metrics()
    m.set_backends("ai", "chat", 1, {"primary": True, "cloud": False})
    m.set_backends("ai", "other", 1, {"solo": True})
    assert series(m) == {
        ("ai", "chat", "primary"): 1.0,
        ("ai", "chat", "cloud"): 0.0,
        ("ai", "other", "solo"): 1.0,
    }
    value = m.registry.get_sample_value
    assert value("ballast_backends_in_route", {"namespace": "ai", "service": "chat"}) == 1.0
    m.set_backends("ai", "chat", 1, {"cloud": True})  # primary removed from the spec
    assert series(m) == {("ai", "chat", "cloud"): 1.0, ("ai", "other", "solo"): 1.0}
    m.forget("ai", "chat")
    assert series(m) == {("ai", "other", "solo"): 1.0}
    assert value("ballast_backends_in_route", {"namespace": "ai", "service": "chat"}) is None

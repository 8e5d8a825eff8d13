"""The routing table: built from an LLMService and health, read back from text."""

from __future__ import annotations

import json

import pytest

from ballast.api import parse_llmservice
from ballast.routing import RoutesError, RoutingTable, parse_tables, table_for
from tests.factories import backend, external, llmservice_obj, vllm


def chat() -> RoutingTable:
    svc = parse_llmservice(
        llmservice_obj(
            vllm(),
            external(apiKeySecretRef={"name": "llm-keys", "key": "openai"}),
            servedModelName="llama-3.1-8b",
        )
        | {"metadata": {"name": "chat", "namespace": "ai", "uid": "u-1", "generation": 4}}
    )
    return table_for(svc, {"primary": True, "cloud": False})


def test_self_hosted_backend_is_reached_through_its_service() -> None:
    primary = chat().backends[0]
    assert primary.url == "http://chat-primary.ai.svc:8000/v1"
    assert primary.upstream_model == "llama-3.1-8b"  # vLLM serves under --served-model-name
    assert primary.in_route is True
    assert primary.credentials is None


def test_external_backend_carries_a_secret_reference_never_a_value() -> None:
    cloud = chat().backends[1]
    assert cloud.url == "https://api.example.com/v1"
    assert cloud.upstream_model == "gpt-4o-mini"
    assert cloud.in_route is False
    assert cloud.credentials is not None
    assert cloud.credentials.secret is not None
    assert cloud.credentials.secret.to_json() == {
        "namespace": "ai",
        "name": "llm-keys",
        "key": "openai",
    }


def test_table_names_its_source_and_policy() -> None:
    table = chat()
    assert table.model == "llama-3.1-8b"
    assert table.source is not None
    assert table.source.generation == 4
    assert table.fallback.max_attempts == 3
    assert table.all_unhealthy is False


def test_no_healthy_backend_says_so_explicitly() -> None:
    svc = parse_llmservice(llmservice_obj())
    table = table_for(svc, {})
    assert table.all_unhealthy is True
    assert not any(b.in_route for b in table.backends)


@pytest.mark.parametrize(
    ("engine", "expected"), [("ollama", "qwen2.5:1.5b"), ("tgi", "qwen2.5:1.5b")]
)
def test_engines_that_cannot_alias_get_their_own_model_name(engine: str, expected: str) -> None:
    svc = parse_llmservice(llmservice_obj(backend(engine, "primary", model="qwen2.5:1.5b")))
    assert table_for(svc, {}).backends[0].upstream_model == expected


def test_dumps_is_canonical_and_round_trips() -> None:
    table = chat()
    text = table.dumps()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert parse_tables(text) == [table]


def test_routes_file_forms() -> None:
    one = chat().to_json()
    two = {**one, "model": "other"}
    assert [t.model for t in parse_tables(json.dumps([one, two]))] == ["llama-3.1-8b", "other"]
    assert len(parse_tables(json.dumps({"tables": [one]}))) == 1


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{", "not YAML or JSON"),
        ("[1]", "expected a mapping"),
        ('{"model": "m", "backends": []}', "backends"),
        (
            '{"model": "m", "version": 2, "backends": [{"name": "a", "engine": "vllm", "url": "u", "upstreamModel": "m"}]}',
            "version",
        ),
    ],
)
def test_bad_routes_text_is_a_clear_error(text: str, needle: str) -> None:
    with pytest.raises(RoutesError, match=needle):
        parse_tables(text, "routes.yaml")


def test_two_tables_for_one_model_are_refused() -> None:
    one = chat().to_json()
    with pytest.raises(RoutesError, match="more than one table"):
        parse_tables(json.dumps([one, one]))


def test_fallback_json_is_the_apis() -> None:
    svc = parse_llmservice(
        llmservice_obj(
            fallback={"maxAttempts": 2, "retryOn": ["5xx"], "circuitBreaker": {"openSeconds": 9}}
        )
    )
    table = table_for(svc, {})
    api_json = svc.spec.fallback.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert table.to_json()["fallback"] == api_json
    assert parse_tables(table.dumps())[0] == table


def test_unknown_fallback_fields_from_a_newer_operator_are_ignored() -> None:
    data = chat().to_json()
    data["fallback"]["hedgeAfterSeconds"] = 2
    data["fallback"]["circuitBreaker"]["halfOpenRequests"] = 3
    [parsed] = parse_tables(json.dumps(data))
    assert parsed.fallback.circuit_breaker.open_seconds == 30
    assert parsed.to_json() == chat().to_json()


def test_self_hosted_backend_names_its_service_for_endpoint_discovery() -> None:
    primary, cloud = chat().backends
    assert primary.service is not None
    assert primary.service.to_json() == {
        "namespace": "ai",
        "name": "chat-primary",
        "portName": "http",
    }
    assert cloud.service is None  # an external API has no pods
    assert "10." not in chat().dumps()  # names, never pod addresses


def test_service_port_name_is_the_one_render_gives_the_service() -> None:
    from ballast.render.pod import PORT_NAME
    from ballast.routing import SERVICE_PORT_NAME

    assert SERVICE_PORT_NAME == PORT_NAME


def test_load_balancing_is_carried_only_when_set_and_defaults_fill_in() -> None:
    assert chat().load_balancing is None
    assert chat().balancing.known_strategy.value == "leastLoaded"
    svc = parse_llmservice(
        llmservice_obj(loadBalancing={"strategy": "prefixHash", "prefixChars": 512})
    )
    lb = table_for(svc, {}).balancing
    assert (lb.known_strategy.value, lb.prefix_length, lb.bound) == ("prefixHash", 512, 1.25)


def test_older_and_newer_tables_load() -> None:
    """A table without the new fields (older operator) and one with unknown ones (newer)."""
    old = json.loads(chat().dumps())
    for b in old["backends"]:
        b.pop("service", None)
    assert parse_tables(json.dumps(old))[0].backends[0].service is None
    new = json.loads(chat().dumps())
    new["loadBalancing"] = {"strategy": "kvCacheAware", "someKnob": 3}
    new["backends"][0]["service"]["zone"] = "a"
    table = parse_tables(json.dumps(new))[0]
    assert table.balancing.known_strategy.value == "leastLoaded"
    assert table.backends[0].service is not None

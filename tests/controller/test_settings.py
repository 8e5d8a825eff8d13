"""``ballast run`` settings: flags over BALLAST_* variables over defaults; bad values named."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from ballast.controller.cli import add_arguments, settings_from
from ballast.controller.settings import DEFAULT_ENDPOINT, SettingsError, from_flags, parse_peers


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_watch_every_namespace_standalone_metrics_on_9090() -> None:
    s = from_flags(env={})
    assert (s.clusterwide, s.metrics_port, s.leader_election) == (True, 9090, False)
    assert s.gateway_endpoint == DEFAULT_ENDPOINT
    assert s.probe_url_override == {}


def test_flags_win_over_environment() -> None:
    env = {
        "BALLAST_NAMESPACES": "a,b",
        "BALLAST_METRICS_PORT": "1",
        "BALLAST_GATEWAY_ENDPOINT": "http://env",
    }
    s = from_flags(namespaces=["c"], metrics_port=0, env=env)
    assert (s.namespaces, s.metrics_port, s.gateway_endpoint) == (("c",), 0, "http://env")
    s = from_flags(env=env)
    assert (s.namespaces, s.metrics_port) == (("a", "b"), 1)


def test_repeated_namespace_flags_and_all_namespaces() -> None:
    s = settings_from(
        parse("-n", "a", "--namespace", "b", "-n", "a", "--liveness", "http://0.0.0.0:8081/healthz")
    )
    assert s.namespaces == ("a", "b")
    assert s.liveness == "http://0.0.0.0:8081/healthz"
    with pytest.raises(SystemExit):
        parse("-n", "a", "--all-namespaces")


def test_leader_election_takes_a_lease_in_the_pods_namespace() -> None:
    s = settings_from(parse("--leader-elect"))
    assert s.leader_election
    s = from_flags(leader_elect=True, env={"POD_NAMESPACE": "ballast-system"})
    assert (s.lease_namespace, s.lease_name, s.lease_duration) == (
        "ballast-system",
        "ballast-operator",
        15.0,
    )
    s = from_flags(env={"BALLAST_LEADER_ELECT": "true", "BALLAST_LEASE_NAME": "ops"})
    assert (s.leader_election, s.lease_name) == (True, "ops")


def test_the_old_peering_flags_still_start_leader_election_with_a_warning() -> None:
    s = settings_from(parse("--peering", "llm", "--priority", "5"))
    assert (s.leader_election, s.lease_name) == (True, "llm")
    assert len(s.deprecated) == 2


def test_leader_election_and_standalone_exclude_each_other() -> None:
    with pytest.raises(SettingsError, match="exclude"):
        from_flags(env={"BALLAST_PEERING": "x", "BALLAST_STANDALONE": "true"})
    with pytest.raises(SettingsError, match="exclude"):
        from_flags(leader_elect=True, standalone=True, env={})
    with pytest.raises(SystemExit):
        parse("--leader-elect", "--standalone")


def test_probe_url_override_is_a_json_object_of_strings() -> None:
    s = from_flags(env={"BALLAST_PROBE_URL_OVERRIDE": '{"ai/chat/primary": "http://127.0.0.1:1/"}'})
    assert s.probe_url_override == {"ai/chat/primary": "http://127.0.0.1:1"}
    for bad in ("nope", '["x"]', '{"a": 1}'):
        with pytest.raises(SettingsError, match="BALLAST_PROBE_URL_OVERRIDE"):
            from_flags(env={"BALLAST_PROBE_URL_OVERRIDE": bad})


def test_a_non_number_is_named() -> None:
    with pytest.raises(SettingsError, match="--metrics-port"):
        from_flags(env={"BALLAST_METRICS_PORT": "lots"})


def test_run_exits_2_on_bad_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ballast.controller.cli import main

    monkeypatch.setenv("BALLAST_METRICS_PORT", "lots")
    assert main(parse()) == 2
    assert "--metrics-port" in capsys.readouterr().err


def test_the_cli_module_does_not_import_kopf() -> None:
    import subprocess
    import sys

    code = "import sys, ballast.controller.cli; print('kopf' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_metrics_address_from_flag_or_env() -> None:
    assert from_flags(env={}).metrics_address == "0.0.0.0"
    assert from_flags(env={"BALLAST_METRICS_ADDRESS": "127.0.0.1"}).metrics_address == "127.0.0.1"
    assert (
        from_flags(metrics_address="::1", env={"BALLAST_METRICS_ADDRESS": "x"}).metrics_address
        == "::1"
    )


def test_engine_policy_peers_are_a_list_of_network_policy_peers() -> None:
    assert from_flags(env={}).engine_peers == ()
    assert from_flags(env={"BALLAST_ENGINE_POLICY_PEERS": " "}).engine_peers == ()
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ballast"}}}
    settings = from_flags(env={"BALLAST_ENGINE_POLICY_PEERS": json.dumps([peer])})
    assert settings.engine_peers == (peer,)
    for text, says in [
        ("[{", "not JSON"),
        ("{}", "non-empty list"),
        ("[]", "non-empty list"),
        ('["x"]', "[0]: must be an object"),
        ('[{"podSelector": {}}, {"podSelectr": {}}]', "[1]: unknown field podSelectr"),
        ('[{"podSelector": "app=gw"}]', "[0]: each of its fields must be an object"),
    ]:
        with pytest.raises(SettingsError, match=r"BALLAST_ENGINE_POLICY_PEERS.*" + re.escape(says)):
            parse_peers(text)

"""The process kubelet's translation of a rendered llamacpp pod into a local command line
(fast tier: no processes, no API server; the realmodel tier runs the result for real)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ballast.render import deployment
from tests.cluster.processkubelet import (
    EngineProcess,
    PathMap,
    Probe,
    TranslationError,
    ballast_command_line,
    command_line,
    is_ballast,
    is_llamacpp,
)
from tests.cluster.tools import tools_dir
from tests.factories import backend, make_llmservice

SERVER = Path("/opt/llama/bin/llama-server")


def rendered_pod(**fields: Any) -> dict[str, Any]:
    svc = make_llmservice(
        backend("llamacpp", model="/models/m.gguf", args=["--ctx-size", "512"], **fields)
    )
    dep = deployment(svc, svc.spec.backends[0])
    template = copy.deepcopy(dep["spec"]["template"])
    meta = {**template["metadata"], "name": "chat-primary-abc", "namespace": "ai", "uid": "u1"}
    return {"metadata": meta, "spec": template["spec"]}


def test_the_rendered_llamacpp_pod_is_recognised() -> None:
    pod = rendered_pod()
    assert is_llamacpp(pod)
    other = copy.deepcopy(pod)
    other["spec"]["containers"][0]["image"] = "vllm/vllm-openai:v0.11.0"
    assert not is_llamacpp(other)


def test_command_line_runs_the_rendered_args_on_the_pod_address(tmp_path: Path) -> None:
    pod = rendered_pod()
    container = pod["spec"]["containers"][0]
    paths = PathMap({"/home/ballast": tmp_path / "home", "/tmp": tmp_path / "tmp"},
                    {"/models": tmp_path / "models"})  # fmt: skip
    argv, env, cwd = command_line(pod, "10.245.0.9", SERVER, paths)
    assert argv[0] == str(SERVER)
    expected = []
    for arg in container["args"]:
        if arg == "0.0.0.0":
            arg = "10.245.0.9"
        elif arg == "/models/m.gguf":
            arg = str(tmp_path / "models" / "m.gguf")
        expected.append(arg)
    assert argv[1:] == expected
    assert argv[-2:] == ["--ctx-size", "512"]  # the user's args, after the engine's own
    assert env["HOME"] == str(tmp_path / "home")
    assert env["LLAMA_CACHE"] == str(tmp_path / "home" / ".cache" / "llama.cpp")
    assert cwd == str(tmp_path / "tmp")


def test_longest_mount_wins_and_unmapped_paths_stay() -> None:
    paths = PathMap({"/data": Path("/l/data"), "/data/sub": Path("/l/sub")}, {"/": Path("/img")})
    assert paths.local("/data/sub/x") == "/l/sub/x"
    assert paths.local("/data/x") == "/l/data/x"
    assert paths.translate("--file=/data/x") == "--file=/l/data/x"
    assert paths.translate("relative/path") == "relative/path"
    assert PathMap({}, {}).translate("/etc/passwd") == "/etc/passwd"


def test_engine_maps_volumes_and_resolves_named_probe_ports(tmp_path: Path) -> None:
    pod = rendered_pod()
    engine = EngineProcess(pod, "10.245.0.9", SERVER, tmp_path, {"/models": tmp_path / "m"}, {}, {})
    # the rendered emptyDirs (home, tmp) become directories of the pod's own
    assert engine.env["HOME"] == str(tmp_path / "ai_chat-primary-abc" / "volumes" / "home")
    assert engine.readiness is not None
    assert engine.startup is not None
    assert engine.readiness.url == "http://10.245.0.9:8080/health"
    assert engine.startup.failure_threshold * engine.startup.period >= 1800


def test_untranslatable_specs_are_refused(tmp_path: Path) -> None:
    pod = rendered_pod()
    pod["spec"]["containers"][0]["command"] = ["/bin/sh", "-c", "sleep 1"]
    with pytest.raises(TranslationError, match="command"):
        command_line(pod, "10.245.0.9", SERVER, PathMap({}, {}))
    pod = rendered_pod()
    pod["spec"]["volumes"].append({"name": "cache", "persistentVolumeClaim": {"claimName": "c"}})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "cache", "mountPath": "/c"})
    with pytest.raises(TranslationError, match="PersistentVolumeClaim 'c'"):
        EngineProcess(pod, "10.245.0.9", SERVER, tmp_path, {}, {}, {})
    with pytest.raises(TranslationError, match="httpGet"):
        Probe({"exec": {"command": ["true"]}}, pod["spec"]["containers"][0], "10.245.0.9")


def chart_pod(component: str) -> dict[str, Any]:
    """A pod of the chart's ``component`` Deployment (as `helm template` renders it)."""
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [str(tools_dir() / "helm"), "template", "ballast", str(repo / "charts" / "ballast"),
         "-n", "ballast-system"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for obj in yaml.safe_load_all(out.stdout):
        if (
            obj
            and obj["kind"] == "Deployment"
            and obj["metadata"]["name"] == f"ballast-{component}"
        ):
            template = obj["spec"]["template"]
            meta = {
                **template["metadata"],
                "name": f"ballast-{component}-x",
                "namespace": "ballast-system",
            }
            return {"metadata": meta, "spec": template["spec"]}
    raise AssertionError(component)


def test_the_charts_pods_run_as_ballast_commands_bound_to_the_pod_address() -> None:
    paths = PathMap({"/tmp": Path("/work/tmp")}, {})
    gateway = chart_pod("gateway")
    assert is_ballast(gateway)
    assert not is_llamacpp(gateway)
    argv, env, cwd = ballast_command_line(gateway, "10.245.1.2", paths)
    assert argv[:4] == [sys.executable, "-m", "ballast.cli", "gateway"]
    assert "--host=10.245.1.2" in argv  # the image listens on every interface: here, the pod's
    assert env["POD_ID"] == "ballast-gateway-x"  # the downward API's metadata.name
    assert env["POD_NAMESPACE"] == "ballast-system"
    assert cwd == "/work/tmp"
    operator = chart_pod("operator")
    argv, env, _ = ballast_command_line(operator, "10.245.1.3", paths)
    assert argv[3] == "run"
    assert "--liveness=http://10.245.1.3:8081/healthz" in argv
    assert not any("0.0.0.0" in a for a in argv)
    assert env["BALLAST_METRICS_ADDRESS"] == "10.245.1.3"
    assert env["BALLAST_GATEWAY_SERVICE"] == "ballast-system/ballast-gateway-internal"
    with_command = copy.deepcopy(operator)
    with_command["spec"]["containers"][0]["command"] = ["/bin/sh"]
    with pytest.raises(TranslationError, match="command"):
        ballast_command_line(with_command, "10.245.1.3", paths)

"""tests/podsecurity.py catches each rule of the restricted profile, and only what it should."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.podsecurity import RULES, rule_of, violations

Obj = dict[str, Any]


def compliant() -> Obj:
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [
            {
                "name": "init",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
        "containers": [
            {
                "name": "app",
                "ports": [{"containerPort": 8000}],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                },
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "x"}}],
    }


def app(p: Obj) -> Obj:
    return p["containers"][0]["securityContext"]


MUTATIONS: list[tuple[str, Callable[[Obj], None]]] = [
    ("hostProcess", lambda p: p["securityContext"].update(windowsOptions={"hostProcess": True})),
    ("hostNamespaces", lambda p: p.update(hostNetwork=True)),
    ("hostNamespaces", lambda p: p.update(hostPID=True)),
    ("hostNamespaces", lambda p: p.update(hostIPC=True)),
    ("privileged", lambda p: app(p).update(privileged=True)),
    ("capabilities", lambda p: app(p)["capabilities"].update(drop=["NET_RAW"])),
    ("capabilities", lambda p: app(p)["capabilities"].update(add=["SYS_ADMIN"])),
    ("capabilities", lambda p: p["initContainers"][0]["securityContext"].pop("capabilities")),
    ("hostPathVolumes", lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}})),
    (
        "volumeTypes",
        lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}}),
    ),
    ("hostPorts", lambda p: p["containers"][0]["ports"][0].update(hostPort=8000)),
    ("appArmor", lambda p: app(p).update(appArmorProfile={"type": "Unconfined"})),
    ("seLinux", lambda p: p["securityContext"].update(seLinuxOptions={"type": "spc_t"})),
    ("seLinux", lambda p: app(p).update(seLinuxOptions={"user": "root"})),
    ("procMount", lambda p: app(p).update(procMount="Unmasked")),
    ("seccomp", lambda p: p["securityContext"].pop("seccompProfile")),
    ("seccomp", lambda p: app(p).update(seccompProfile={"type": "Unconfined"})),
    (
        "sysctls",
        lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
    ),
    ("allowPrivilegeEscalation", lambda p: app(p).pop("allowPrivilegeEscalation")),
    (
        "allowPrivilegeEscalation",
        lambda p: p["initContainers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
    ),
    ("runAsNonRoot", lambda p: p["securityContext"].pop("runAsNonRoot")),
    ("runAsNonRoot", lambda p: app(p).update(runAsNonRoot=False)),
    ("runAsUser", lambda p: p["securityContext"].update(runAsUser=0)),
    ("runAsUser", lambda p: app(p).update(runAsUser=0)),
]


def test_a_compliant_pod_has_no_violations() -> None:
    assert violations(compliant()) == []


@pytest.mark.parametrize(
    ("rule", "mutate"), MUTATIONS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(MUTATIONS)]
)
def test_each_violation_is_caught_under_its_rule(rule: str, mutate: Callable[[Obj], None]) -> None:
    pod = copy.deepcopy(compliant())
    mutate(pod)
    found = violations(pod)
    assert found
    assert {rule_of(v) for v in found} == {rule}, found
    assert violations(pod, allow=[rule]) == []


def test_every_rule_has_a_case() -> None:
    assert {r for r, _ in MUTATIONS} == set(RULES)


def test_container_settings_may_replace_pod_settings() -> None:
    pod = compliant()
    del pod["securityContext"]
    for c in pod["initContainers"] + pod["containers"]:
        c["securityContext"].update(
            runAsNonRoot=True, seccompProfile={"type": "Localhost", "localhostProfile": "p"}
        )
    assert violations(pod) == []


def test_an_unknown_allowed_rule_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown"):
        violations(compliant(), allow=["runAsRoot"])

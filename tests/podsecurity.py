"""The Kubernetes "restricted" Pod Security Standard as a plain function over a pod spec.

:func:`violations` returns one message per broken rule, each starting with the
rule's name (``runAsNonRoot: ...``), following the Pod Security Standards
(kubernetes.io/docs/concepts/security/pod-security-standards, restricted
profile, which includes baseline). Used by the render tests on every pod Ballast
renders and by the chart tests on the operator and gateway pods. ``allow`` names
rules an engine documents as an exception (``EngineInfo.pod_security_exceptions``).

Rules: hostProcess, hostNamespaces, privileged, capabilities, hostPathVolumes,
hostPorts, appArmor, seLinux, procMount, seccomp, sysctls, volumeTypes,
allowPrivilegeEscalation, runAsNonRoot, runAsUser.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

Obj = Mapping[str, Any]

RULES = (
    "hostProcess",
    "hostNamespaces",
    "privileged",
    "capabilities",
    "hostPathVolumes",
    "hostPorts",
    "appArmor",
    "seLinux",
    "procMount",
    "seccomp",
    "sysctls",
    "volumeTypes",
    "allowPrivilegeEscalation",
    "runAsNonRoot",
    "runAsUser",
)

ALLOWED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})


def _containers(spec: Obj) -> Iterator[tuple[str, Obj]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or ():
            yield f"{field[:-1]} {c.get('name', '?')}", c


def _pod_level(spec: Obj) -> Iterator[str]:
    ctx = spec.get("securityContext") or {}
    if (ctx.get("windowsOptions") or {}).get("hostProcess"):
        yield "hostProcess: pod sets windowsOptions.hostProcess"
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            yield f"hostNamespaces: pod sets {field}"
    for v in spec.get("volumes") or ():
        kinds = [k for k in v if k != "name"]
        if "hostPath" in kinds:
            yield f"hostPathVolumes: volume {v.get('name')} is a hostPath"
        for kind in kinds:  # hostPath is its own (baseline) rule, reported once
            if kind not in ALLOWED_VOLUME_TYPES and kind != "hostPath":
                yield f"volumeTypes: volume {v.get('name')} has type {kind}"
    for s in ctx.get("sysctls") or ():
        if s.get("name") not in SAFE_SYSCTLS:
            yield f"sysctls: pod sets unsafe sysctl {s.get('name')}"
    if ctx.get("runAsUser") == 0:
        yield "runAsUser: pod sets runAsUser 0"


def _profile_ok(profile: Obj | None, allowed: frozenset[str]) -> bool | None:
    """True/False when a profile is set and allowed or not; None when unset."""
    if not profile:
        return None
    return profile.get("type") in allowed


def _inherited(spec: Obj, where: str, c: Obj) -> Iterator[str]:
    """Rules a container may satisfy itself or inherit from the pod's securityContext."""
    pod = spec.get("securityContext") or {}
    ctx = c.get("securityContext") or {}
    non_root = ctx.get("runAsNonRoot", pod.get("runAsNonRoot"))
    if non_root is not True:
        yield f"runAsNonRoot: {where} does not set runAsNonRoot true (nor does the pod)"
    seccomp = _profile_ok(ctx.get("seccompProfile"), SECCOMP_TYPES)
    if seccomp is None:
        seccomp = _profile_ok(pod.get("seccompProfile"), SECCOMP_TYPES)
    if seccomp is not True:
        yield f"seccomp: {where} needs seccompProfile RuntimeDefault or Localhost"
    for scope, sc in (("pod", pod), (where, ctx)):
        if _profile_ok(sc.get("appArmorProfile"), APPARMOR_TYPES) is False:
            yield f"appArmor: {scope} sets an appArmorProfile other than RuntimeDefault/Localhost"
        selinux = sc.get("seLinuxOptions") or {}
        if (
            selinux.get("type", "") not in SELINUX_TYPES
            or selinux.get("user")
            or selinux.get("role")
        ):
            yield f"seLinux: {scope} sets forbidden seLinuxOptions"


def _container_level(where: str, c: Obj) -> Iterator[str]:
    ctx = c.get("securityContext") or {}
    if ctx.get("privileged"):
        yield f"privileged: {where} is privileged"
    if (ctx.get("windowsOptions") or {}).get("hostProcess"):
        yield f"hostProcess: {where} sets windowsOptions.hostProcess"
    caps = ctx.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or ()):
        yield f"capabilities: {where} does not drop ALL"
    for cap in caps.get("add") or ():
        if cap != "NET_BIND_SERVICE":
            yield f"capabilities: {where} adds {cap}"
    for p in c.get("ports") or ():
        if p.get("hostPort"):
            yield f"hostPorts: {where} uses hostPort {p['hostPort']}"
    if ctx.get("procMount", "Default") != "Default":
        yield f"procMount: {where} sets procMount {ctx['procMount']}"
    if ctx.get("allowPrivilegeEscalation") is not False:
        yield f"allowPrivilegeEscalation: {where} does not set allowPrivilegeEscalation false"
    if ctx.get("runAsUser") == 0:
        yield f"runAsUser: {where} sets runAsUser 0"


def violations(pod_spec: Obj, allow: Iterable[str] = ()) -> list[str]:
    """Every way ``pod_spec`` breaks the restricted profile, except rules in ``allow``."""
    allowed = set(allow)
    unknown = allowed - set(RULES)
    if unknown:
        raise ValueError(f"unknown rules in allow: {sorted(unknown)}")
    found = list(_pod_level(pod_spec))
    for where, c in _containers(pod_spec):
        found += _inherited(pod_spec, where, c)
        found += _container_level(where, c)
    return [v for v in found if rule_of(v) not in allowed]


def rule_of(violation: str) -> str:
    """The rule name a violation message starts with."""
    return violation.split(":", 1)[0]

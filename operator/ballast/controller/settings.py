"""The operator's settings, from ``ballast run`` flags and ``BALLAST_*`` environment variables.

A flag wins over its environment variable, which wins over the default. The
module imports nothing heavy: :mod:`ballast.controller.cli` imports it for every
``ballast`` command.

Engine NetworkPolicies: ``BALLAST_ENGINE_POLICY_PEERS`` is a JSON list of
``networking.k8s.io/v1`` NetworkPolicyPeer objects (the gateway's and the operator's
pods, and namespaces allowed to call engines directly). When set, every LLMService with
a self-hosted backend gets a NetworkPolicy admitting only those peers to its engine pods
(:mod:`ballast.render.network`); unset, none is created (and any Ballast created before is
deleted as no longer desired). The chart sets it from ``engineNetworkPolicy``.

Probe URLs: in a cluster a self-hosted backend is probed through its Service
(``http://<svc>-<backend>.<namespace>.svc:<port><path>``). ``BALLAST_PROBE_URL_OVERRIDE``
(a JSON object) replaces the scheme, host and port of that URL per backend, keyed
``"<namespace>/<service>/<backend>"`` or ``"*"``; values may use ``{namespace}``,
``{service}`` and ``{backend}``. Tests point probes at loopback servers with it;
production leaves it unset.

Demand (scale to zero, cold standbys): ``BALLAST_GATEWAY_SERVICE=<namespace>/<name>`` names
the gateway Service whose pods report held and in-flight requests (the chart sets it);
``BALLAST_GATEWAY_DEMAND_URLS`` adds fixed report URLs (local runs, tests).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ballast import DEFAULT_IMAGE

DEFAULT_ENDPOINT: Final = "http://ballast-gateway.ballast-system.svc/v1"
DEFAULT_LEASE: Final = "ballast-operator"
#: LLMServices reconciled at once (``BALLAST_RECONCILE_CONCURRENCY``); see docs/operations.md.
DEFAULT_RECONCILE_CONCURRENCY: Final = 16


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the flag or variable."""


@dataclass(frozen=True)
class Settings:
    """Everything ``ballast run`` can be told."""

    #: Namespaces to watch; empty means every namespace (cluster-wide).
    namespaces: tuple[str, ...] = ()
    #: Port of the Prometheus endpoint (/metrics); 0 disables it.
    metrics_port: int = 9090
    #: Address the metrics server binds (0.0.0.0: every interface, for Prometheus scrapes).
    metrics_address: str = "0.0.0.0"
    #: kopf's liveness endpoint, e.g. http://0.0.0.0:8081/healthz; None disables it.
    liveness: str | None = None
    #: Take a coordination.k8s.io Lease before acting (several replicas); see controller.leader.
    leader_election: bool = False
    #: Name of the Lease.
    lease_name: str = DEFAULT_LEASE
    #: Namespace of the Lease (the operator's own: POD_NAMESPACE).
    lease_namespace: str = "default"
    #: Seconds a Lease holder's claim lasts; a hard crash of the leader costs about this long.
    lease_duration: float = 15.0
    #: Deprecated flags that were given and are ignored (warned about at start).
    deprecated: tuple[str, ...] = ()
    #: Image of the model cache loader (``ballast fetch``): Ballast's own image.
    loader_image: str = DEFAULT_IMAGE
    #: Who may call engine pods (NetworkPolicyPeer objects); empty: no engine NetworkPolicy.
    engine_peers: tuple[Mapping[str, Any], ...] = ()
    #: Seconds before a failed loader Job is run again (doubling per failure, at most 1 h).
    loader_retry: float = 60.0
    #: OpenAI base URL of the gateway, written into every LLMService's status.
    gateway_endpoint: str = DEFAULT_ENDPOINT
    #: LLMServices parsed, rendered and applied at once; the rest of a burst waits.
    reconcile_concurrency: int = DEFAULT_RECONCILE_CONCURRENCY
    #: Probes in flight at once, across all backends.
    probe_concurrency: int = 64
    #: Upper bound of one probe's duration (seconds), on top of each backend's timeoutSeconds.
    probe_timeout: float = 10.0
    #: Seconds before a missing Secret is looked up again (doubling up to 10 times this).
    secret_retry: float = 15.0
    #: Per-backend probe base URLs, see the module docstring.
    probe_url_override: Mapping[str, str] = field(default_factory=dict)
    #: Longest wait (seconds) between retries of an apply the API refuses.
    retry_max: float = 300.0
    #: The gateway Service (namespace, name) whose pods report demand (scale to zero, standby).
    gateway_service: tuple[str, str] | None = None
    #: Fixed gateway demand URLs (local runs, tests), read besides the Service's pods.
    gateway_demand_urls: tuple[str, ...] = ()
    #: Seconds a watch request stays open before the server closes it (kopf reconnects).
    watch_timeout: int = 300
    log_format: str = "json"
    verbose: bool = False

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def _env_bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _number(name: str, value: str | float | int | None, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"{name}: not a number: {value!r}") from None


def parse_override(text: str | None) -> dict[str, str]:
    """``BALLAST_PROBE_URL_OVERRIDE``: a JSON object of backend key -> base URL."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SettingsError(f"BALLAST_PROBE_URL_OVERRIDE: not JSON: {e}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise SettingsError("BALLAST_PROBE_URL_OVERRIDE: must be an object of strings")
    return {k: v.rstrip("/") for k, v in data.items()}


_PEER_FIELDS: Final = frozenset({"namespaceSelector", "podSelector", "ipBlock"})


def parse_peers(text: str | None) -> tuple[dict[str, Any], ...]:
    """``BALLAST_ENGINE_POLICY_PEERS``: a JSON list of NetworkPolicyPeer objects."""
    name = "BALLAST_ENGINE_POLICY_PEERS"
    if not text or not text.strip():
        return ()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SettingsError(f"{name}: not JSON: {e}") from None
    if not isinstance(data, list) or not data:
        raise SettingsError(f"{name}: must be a non-empty list of NetworkPolicyPeer objects")
    for i, peer in enumerate(data):
        if not isinstance(peer, dict) or not peer:
            raise SettingsError(f'{name}[{i}]: must be an object, e.g. {{"podSelector": {{}}}}')
        unknown = sorted(set(peer) - _PEER_FIELDS)
        if unknown:
            raise SettingsError(
                f"{name}[{i}]: unknown field {', '.join(unknown)}; a NetworkPolicyPeer has "
                f"{', '.join(sorted(_PEER_FIELDS))}"
            )
        if not all(isinstance(v, dict) for v in peer.values()):
            raise SettingsError(f"{name}[{i}]: each of its fields must be an object")
    return tuple(data)


def parse_gateway_service(text: str | None) -> tuple[str, str] | None:
    """``BALLAST_GATEWAY_SERVICE``: ``<namespace>/<name>`` of the gateway Service."""
    if not text or not text.strip():
        return None
    namespace, _, name = text.strip().partition("/")
    if not namespace or not name or "/" in name:
        raise SettingsError(
            f"BALLAST_GATEWAY_SERVICE: <namespace>/<name> of the gateway Service, not {text!r}"
        )
    return namespace, name


def parse_demand_urls(text: str | None) -> tuple[str, ...]:
    """``BALLAST_GATEWAY_DEMAND_URLS``: comma-separated http(s) URLs of demand reports."""
    urls = tuple(u.strip() for u in (text or "").split(",") if u.strip())
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise SettingsError(f"BALLAST_GATEWAY_DEMAND_URLS: not an http(s) URL: {u!r}")
    return urls


def from_flags(
    *,
    namespaces: list[str] | None = None,
    all_namespaces: bool = False,
    metrics_port: int | None = None,
    metrics_address: str | None = None,
    liveness: str | None = None,
    leader_elect: bool = False,
    lease_name: str | None = None,
    lease_namespace: str | None = None,
    peering: str | None = None,
    standalone: bool = False,
    priority: int | None = None,
    gateway_endpoint: str | None = None,
    probe_concurrency: int | None = None,
    verbose: bool = False,
    log_format: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from parsed flags, falling back to ``BALLAST_*`` variables in ``env``."""
    env = os.environ if env is None else env
    names = list(namespaces or [])
    if not names and not all_namespaces:
        names = [n.strip() for n in env.get("BALLAST_NAMESPACES", "").split(",") if n.strip()]
    if names and all_namespaces:
        raise SettingsError("--namespace and --all-namespaces exclude each other")
    deprecated = []
    peering = peering or env.get("BALLAST_PEERING") or None
    if peering:  # kopf peering was replaced by a Lease: the old flag names the Lease
        deprecated.append("--peering (use --leader-elect --lease-name)")
    if priority is not None or env.get("BALLAST_PRIORITY"):
        deprecated.append("--priority (a Lease has no priorities)")
    elect = leader_elect or _env_bool(env.get("BALLAST_LEADER_ELECT")) or bool(peering)
    standalone = standalone or _env_bool(env.get("BALLAST_STANDALONE"))
    if elect and standalone:
        raise SettingsError("--leader-elect (or --peering) and --standalone exclude each other")
    lease = lease_name or env.get("BALLAST_LEASE_NAME") or peering or DEFAULT_LEASE
    lease_ns = lease_namespace or env.get("BALLAST_LEASE_NAMESPACE") or env.get("POD_NAMESPACE")
    port = metrics_port if metrics_port is not None else env.get("BALLAST_METRICS_PORT")
    concurrency = probe_concurrency or env.get("BALLAST_PROBE_CONCURRENCY")
    fmt = log_format or env.get("BALLAST_LOG_FORMAT") or "json"
    if fmt not in ("json", "plain"):
        raise SettingsError(f"--log-format: json or plain, not {fmt!r}")
    return Settings(
        namespaces=tuple(dict.fromkeys(names)),
        metrics_port=int(_number("--metrics-port", port, 9090)),
        metrics_address=metrics_address or env.get("BALLAST_METRICS_ADDRESS") or "0.0.0.0",
        liveness=liveness or env.get("BALLAST_LIVENESS") or None,
        leader_election=elect,
        lease_name=lease,
        lease_namespace=lease_ns or "default",
        lease_duration=_number("BALLAST_LEASE_DURATION", env.get("BALLAST_LEASE_DURATION"), 15.0),
        deprecated=tuple(deprecated),
        gateway_endpoint=gateway_endpoint
        or env.get("BALLAST_GATEWAY_ENDPOINT")
        or DEFAULT_ENDPOINT,
        probe_concurrency=max(1, int(_number("--probe-concurrency", concurrency, 64))),
        reconcile_concurrency=max(
            1,
            int(
                _number(
                    "BALLAST_RECONCILE_CONCURRENCY",
                    env.get("BALLAST_RECONCILE_CONCURRENCY"),
                    DEFAULT_RECONCILE_CONCURRENCY,
                )
            ),
        ),
        probe_timeout=_number("BALLAST_PROBE_TIMEOUT", env.get("BALLAST_PROBE_TIMEOUT"), 10.0),
        secret_retry=_number("BALLAST_SECRET_RETRY", env.get("BALLAST_SECRET_RETRY"), 15.0),
        retry_max=_number("BALLAST_RETRY_MAX_SECONDS", env.get("BALLAST_RETRY_MAX_SECONDS"), 300.0),
        probe_url_override=parse_override(env.get("BALLAST_PROBE_URL_OVERRIDE")),
        watch_timeout=int(_number("BALLAST_WATCH_TIMEOUT", env.get("BALLAST_WATCH_TIMEOUT"), 300)),
        log_format=fmt,
        loader_image=env.get("BALLAST_LOADER_IMAGE") or DEFAULT_IMAGE,
        engine_peers=parse_peers(env.get("BALLAST_ENGINE_POLICY_PEERS")),
        gateway_service=parse_gateway_service(env.get("BALLAST_GATEWAY_SERVICE")),
        gateway_demand_urls=parse_demand_urls(env.get("BALLAST_GATEWAY_DEMAND_URLS")),
        loader_retry=_number(
            "BALLAST_LOADER_RETRY_SECONDS", env.get("BALLAST_LOADER_RETRY_SECONDS"), 60.0
        ),
        verbose=verbose or _env_bool(env.get("BALLAST_VERBOSE")),
    )

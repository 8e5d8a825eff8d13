"""A fake kubelet (and scheduler) for the test control plane, so Deployments become
Available without containers.

It registers one Ready Node with GPU capacity, binds Pending pods whose
`nodeSelector` the Node satisfies, reports bound pods Running with container
statuses, and finishes graceful deletions the way a kubelet does once containers
stop. Readiness follows kubelet rules: a pod is Ready when all its containers are
ready and all its `readinessGates` are True. Probes are not run; a container is
ready unless the pod's `fake-kubelet.test/not-ready` annotation names it (a
comma-separated list, or `*` for all), which lets a test make a backend unready.
Pod IPs come from 10.244.0.0/16 and are never dialled, except for pods annotated
`fake-kubelet.test/serve: "true"`: those get an address from 10.245.0.0/16 on the
`lo` interface and a fake engine listening there on their first container port
(`fakeengine.py`; `engines` maps "namespace/pod" to it). Deleting such a pod works like
a kubelet stopping a container: the pod stays terminating until the engine's requests
in flight finished, then it is removed and so is its address.

Pods that run to completion (`restartPolicy` Never or OnFailure, such as a Job's)
run until `job_outcome(pod)` gives their first container's (exit code, termination
message): then they are reported Succeeded (exit 0) or Failed, with the container
terminated as a kubelet reports it. The default outcome is an immediate success with
an empty message; a test sets its own (None keeps the pod Running).

Pods the operator renders carry no annotation; a test makes them served with
`serve(namespace, labels, ready_after=N)`: every pod of the namespace (matching the
labels, if given) is served, and reports Ready only N seconds after the kubelet first
reported it Running (a model load; `math.inf`: never). `marks` records, per
"namespace/pod", when the pod was bound, first reported Running and first reported
Ready (monotonic and wall-clock time just before the status write that reported it was
sent: nothing can see the pod Ready earlier, while a mark taken after the write returned
can be later than a client of the EndpointSlice reacting to it), for tests and benchmarks.

It polls the API from a background thread; `sync()` runs one pass synchronously.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from .fakeengine import SERVE_ANNOTATION, SERVED_NETWORK, FakeEngine, blackhole
from .kubeapi import JSON, ApiError, KubeApi

NOT_READY_ANNOTATION = "fake-kubelet.test/not-ready"
DEFAULT_CAPACITY = {
    "cpu": "64",
    "memory": "512Gi",
    "pods": "110",
    "ephemeral-storage": "1Ti",
    "nvidia.com/gpu": "8",
}
# Errors that only mean the pod moved on between our list and our write.
_RACES = (404, 409)
# Consecutive failed passes (at `interval` apart) before the kubelet gives up.
_GIVE_UP_AFTER = 25


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod_ips(network: str = "10.244.0.0/16") -> Iterator[str]:
    for ip in ipaddress.ip_network(network).hosts():
        if ip.packed[-1] not in (0, 1, 255):
            yield str(ip)


def _container_status(container: JSON, ready: bool, started_at: str, uid: str) -> JSON:
    name = container["name"]
    return {
        "name": name,
        "image": container.get("image", ""),
        "imageID": f"fake://{container.get('image', '')}",
        "containerID": f"fake://{uid}/{name}",
        "ready": ready,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": started_at}},
    }


def _init_status(container: JSON, started_at: str, uid: str) -> JSON:
    if container.get("restartPolicy") == "Always":  # a sidecar keeps running
        return _container_status(container, True, started_at, uid)
    status = _container_status(container, False, started_at, uid)
    status["started"] = False
    status["state"] = {
        "terminated": {
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": started_at,
            "finishedAt": started_at,
        }
    }
    return status


def _unready_names(pod: JSON) -> set[str]:
    raw = pod["metadata"].get("annotations", {}).get(NOT_READY_ANNOTATION, "")
    names = {n.strip() for n in raw.split(",") if n.strip()}
    if "*" in names:
        names = {c["name"] for c in pod["spec"]["containers"]}
    return names


def desired_status(pod: JSON, pod_ip: str, host_ip: str, unready: set[str] | None = None) -> JSON:
    """The status a kubelet would report for a bound pod whose containers all started
    (`unready`: the containers not ready; default: the not-ready annotation's)."""
    current = pod.get("status", {})
    started_at = current.get("startTime") or _now()
    uid = pod["metadata"]["uid"]
    if unready is None:
        unready = _unready_names(pod)
    containers = [
        _container_status(c, c["name"] not in unready, started_at, uid)
        for c in pod["spec"]["containers"]
    ]
    inits = [_init_status(c, started_at, uid) for c in pod["spec"].get("initContainers", [])]
    containers_ready = all(c["ready"] for c in containers)
    gates = [g["conditionType"] for g in pod["spec"].get("readinessGates", [])]
    by_type = {c["type"]: c for c in current.get("conditions", [])}
    gates_ok = all(by_type.get(g, {}).get("status") == "True" for g in gates)
    wanted = {
        "PodReadyToStartContainers": True,
        "Initialized": True,
        "ContainersReady": containers_ready,
        "Ready": containers_ready and gates_ok,
        "PodScheduled": True,
    }
    conditions = [c for t, c in by_type.items() if t not in wanted]  # readiness gates etc.
    for ctype, ok in wanted.items():
        value = "True" if ok else "False"
        old = by_type.get(ctype, {})
        condition = {
            "type": ctype,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": old.get("lastTransitionTime")
            if old.get("status") == value
            else _now(),
        }
        if not ok:
            condition["reason"] = (
                "ContainersNotReady" if not containers_ready else "ReadinessGatesNotReady"
            )
        conditions.append(condition)
    status: JSON = {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started_at,
        "containerStatuses": containers,
    }
    if inits:
        status["initContainerStatuses"] = inits
    return status


#: A finished pod's (exit code, termination message), or None while it still runs.
JobOutcome = Callable[[JSON], "tuple[int, str] | None"]


def _runs_to_completion(pod: JSON) -> bool:
    return pod["spec"].get("restartPolicy", "Always") in ("Never", "OnFailure")


def finished_status(pod: JSON, pod_ip: str, host_ip: str, exit_code: int, message: str) -> JSON:
    """The status a kubelet reports once a pod's containers exited (the first with `exit_code`)."""
    status = desired_status(pod, pod_ip, host_ip)
    now = _now()
    for i, c in enumerate(status["containerStatuses"]):
        code = exit_code if i == 0 else 0
        terminated: JSON = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": status["startTime"],
            "finishedAt": now,
        }
        if message and i == 0:
            terminated["message"] = message
        c.update(ready=False, started=False, state={"terminated": terminated})
    for cond in status["conditions"]:
        if cond["type"] in ("Ready", "ContainersReady"):
            cond.update(status="False", reason="PodCompleted", lastTransitionTime=now)
    status["phase"] = "Succeeded" if exit_code == 0 else "Failed"
    return status


def _summary(status: JSON) -> tuple[Any, ...]:
    """What a status says, ignoring timestamps: used to skip writes that change nothing."""
    conditions = sorted((c["type"], c["status"]) for c in status.get("conditions", []))
    containers = sorted(
        (c["name"], c.get("ready"), tuple(c.get("state", {})))
        for c in status.get("containerStatuses", [])
    )
    return status.get("phase"), status.get("podIP"), tuple(conditions), tuple(containers)


@dataclass(frozen=True)
class ServeRule:
    """Pods of `namespace` whose labels include `labels` are served; Ready `ready_after`
    seconds after they first run."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ready_after: float = 0.0

    def matches(self, pod: JSON) -> bool:
        meta = pod["metadata"]
        if meta.get("namespace") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        return all(labels.get(k) == v for k, v in self.labels.items())


@dataclass
class PodMarks:
    """When the kubelet did what to one pod: (monotonic, wall-clock) pairs, None until then."""

    labels: Mapping[str, str]
    bound: tuple[float, float] | None = None
    running: tuple[float, float] | None = None
    ready: tuple[float, float] | None = None


def _mark() -> tuple[float, float]:
    return time.monotonic(), time.time()


class FakeKubelet:
    """One fake Node and the pods on it. Start/stop, or use as a context manager."""

    def __init__(
        self,
        api: KubeApi,
        node_name: str = "fake-node",
        *,
        labels: dict[str, str] | None = None,
        capacity: dict[str, str] | None = None,
        interval: float = 0.2,
        kubelet_version: str = "v0.0.0-fake",
        served_network: str = SERVED_NETWORK,
    ) -> None:
        self.api = api
        self.node_name = node_name
        self.labels = {
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **(labels or {}),
        }
        self.capacity = capacity or dict(DEFAULT_CAPACITY)
        self.interval = interval
        self.kubelet_version = kubelet_version
        self.host_ip = "127.0.0.1"
        self.errors: list[Exception] = []
        self._ips = _pod_ips()
        #: Addresses of served pods: a kubelet run after another in one process can take a
        #: range of its own (inside SERVED_NETWORK), so a listener the other left in
        #: TIME_WAIT or still draining never holds an address it hands out.
        self._served_ips = _pod_ips(served_network)
        self._blackhole = False
        #: engines whose pod is gone, and since when (their address goes 2 s later)
        self._gone: dict[str, float] = {}
        #: "namespace/pod" -> the fake engine of a served pod
        self.engines: dict[str, FakeEngine] = {}
        self._draining: dict[str, threading.Thread] = {}
        #: how pods that run to completion end (see the module docstring)
        self.job_outcome: JobOutcome = lambda pod: (0, "")
        #: pods served without the annotation, and their readiness delay (see `serve`)
        self.serve_rules: list[ServeRule] = []
        #: "namespace/pod" -> when it was bound, first Running, first Ready
        self.marks: dict[str, PodMarks] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeKubelet:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Register the Node and start syncing pods in a daemon thread."""
        self.register_node()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"fake-kubelet-{self.node_name}")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop syncing and remove the Node; raise if a sync pass failed unexpectedly."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for key in list(self.engines):
            self._forget(key, now=True)
        if self._blackhole:
            blackhole(False)
            self._blackhole = False
        try:
            self.api.delete(f"/api/v1/nodes/{self.node_name}")
        except ApiError as err:
            if err.status != 404:
                raise
        if self.errors:
            raise RuntimeError(f"fake kubelet failed: {self.errors[0]!r}") from self.errors[0]

    def serve(
        self, namespace: str, labels: Mapping[str, str] | None = None, ready_after: float = 0.0
    ) -> ServeRule:
        """Serve the pods of `namespace` (with `labels`), Ready `ready_after` s after they run.

        The first matching rule wins; `unserve` removes one."""
        rule = ServeRule(namespace, dict(labels or {}), ready_after)
        self.serve_rules.append(rule)
        return rule

    def unserve(self, rule: ServeRule) -> None:
        if rule in self.serve_rules:
            self.serve_rules.remove(rule)

    def _rule(self, pod: JSON) -> ServeRule | None:
        return next((r for r in list(self.serve_rules) if r.matches(pod)), None)

    def _held_back(self, key: str, pod: JSON) -> bool:
        """True while a served pod's readiness delay (its rule's `ready_after`) runs."""
        rule = self._rule(pod)
        if rule is None or not rule.ready_after:
            return False
        marks = self.marks.get(key)
        if marks is None or marks.running is None:
            return True
        return time.monotonic() - marks.running[0] < rule.ready_after

    def _marks(self, key: str, pod: JSON) -> PodMarks:
        marks = self.marks.get(key)
        if marks is None:
            marks = self.marks[key] = PodMarks(dict(pod["metadata"].get("labels") or {}))
        return marks

    def register_node(self) -> None:
        """Create (or take over) the Node and report it Ready with its capacity."""
        path = f"/api/v1/nodes/{self.node_name}"
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name}}
        try:
            self.api.post("/api/v1/nodes", node)
        except ApiError as err:
            if err.status != 409:
                raise
        # Admission taints a new Node not-ready; with no node controller we clear it ourselves.
        self.api.merge_patch(path, {"metadata": {"labels": self.labels}, "spec": {"taints": None}})
        self.api.merge_patch(f"{path}/status", {"status": self._node_status()})

    def _node_status(self) -> JSON:
        now = _now()
        conditions = [
            ("Ready", "True", "KubeletReady"),
            ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ]
        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": r,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
                for t, s, r in conditions
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip},
                {"type": "Hostname", "address": self.node_name},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": self.kubelet_version,
                "containerRuntimeVersion": "fake://0",
                "kernelVersion": "",
                "osImage": "fake",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
        }

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(self.interval):
            try:
                self.sync()
                failures = 0
            except Exception as err:  # a slow or restarting server gets a few seconds
                failures += 1
                if failures >= _GIVE_UP_AFTER:
                    self.errors.append(err)  # re-raised by stop()
                    return

    def sync(self) -> None:
        """One pass: bind, report and finish deleting every pod that concerns this Node."""
        pods = self.api.get("/api/v1/pods")["items"]
        for pod in pods:
            try:
                self._sync_pod(pod)
            except ApiError as err:
                if err.status not in _RACES:
                    raise
        listed = {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods}
        for key in set(self.engines) - listed:
            self._forget(key)

    def _forget(self, key: str, now: bool = False) -> None:
        """A served pod is gone: stop its engine; its address goes once the gateway had
        2 s to see the EndpointSlice change (or at once when the kubelet stops)."""
        engine = self.engines.get(key)
        if engine is None:
            return
        engine.kill()
        gone = self._gone.setdefault(key, time.monotonic())
        if now or time.monotonic() - gone >= 2.0:
            engine.remove()
            del self.engines[key]
            self._draining.pop(key, None)
            self._gone.pop(key, None)

    def _serve(self, pod: JSON, pod_ip: str | None) -> str:
        """The address of an annotated pod, with its engine started there."""
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        engine = self.engines.get(key)
        if engine is None:
            if not self._blackhole:
                blackhole(True)
                self._blackhole = True
            engine = self._new_engine(pod, pod_ip or next(self._served_ips))
            self.engines[key] = engine.start()
        return engine.ip

    # Hooks for kubelets that run something else behind a served pod (processkubelet.py).
    def _new_engine(self, pod: JSON, ip: str) -> FakeEngine:
        """The (not yet started) engine of a served pod on `ip`."""
        ports = pod["spec"]["containers"][0].get("ports") or [{"containerPort": 8000}]
        return FakeEngine(pod["metadata"]["name"], ip, int(ports[0]["containerPort"]))

    def _is_served(self, pod: JSON) -> bool:
        """True for a pod that gets its own address and an engine."""
        if (pod["metadata"].get("annotations") or {}).get(SERVE_ANNOTATION) == "true":
            return True
        return self._rule(pod) is not None

    def _unready(self, pod: JSON) -> set[str] | None:
        """The pod's containers that are not ready (None: as the not-ready annotation says)."""
        return None

    def _stopping(self, key: str) -> bool:
        """True while a served pod's engine drains (the pod stays terminating)."""
        engine = self.engines.get(key)
        if engine is None:
            return False
        thread = self._draining.get(key)
        if thread is None:
            thread = threading.Thread(target=engine.drain, daemon=True)
            self._draining[key] = thread
            thread.start()
        return thread.is_alive()

    def _sync_pod(self, pod: JSON) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        base = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        node = spec.get("nodeName")
        if not node:
            if self._schedulable(pod):
                self.api.post(f"{base}/binding", self._binding(meta["name"]))
                if self.serve_rules:
                    self._marks(f"{meta['namespace']}/{meta['name']}", pod).bound = _mark()
            return
        if node != self.node_name or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        served = self._is_served(pod)
        if meta.get("deletionTimestamp"):
            if served and self._stopping(f"{meta['namespace']}/{meta['name']}"):
                return
            body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
            self.api.delete(base, body)
            return
        current = pod.get("status", {})
        if served:
            pod_ip = self._serve(pod, current.get("podIP"))
        else:
            pod_ip = current.get("podIP") or next(self._ips)
        key = f"{meta['namespace']}/{meta['name']}"
        unready = self._unready(pod)
        if self.serve_rules and self._held_back(key, pod):
            unready = {c["name"] for c in spec["containers"]}
        wanted = desired_status(pod, pod_ip, self.host_ip, unready)
        if _runs_to_completion(pod) and current.get("phase") == "Running":
            outcome = self.job_outcome(pod)
            if outcome is not None:
                wanted = finished_status(pod, pod_ip, self.host_ip, *outcome)
        if _summary(wanted) != _summary(current):
            sent = _mark()
            self.api.merge_patch(f"{base}/status", {"status": wanted})
            if self.serve_rules:
                self._mark_status(key, pod, wanted, sent)

    def _mark_status(self, key: str, pod: JSON, status: JSON, sent: tuple[float, float]) -> None:
        marks = self._marks(key, pod)
        if status.get("phase") == "Running" and marks.running is None:
            marks.running = sent
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
        )
        if ready and marks.ready is None:
            marks.ready = sent

    def _schedulable(self, pod: JSON) -> bool:
        spec = pod["spec"]
        if pod["metadata"].get("deletionTimestamp"):
            return False
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return False
        selector: dict[str, str] = spec.get("nodeSelector") or {}
        return all(self.labels.get(k) == v for k, v in selector.items())

    def _binding(self, name: str) -> JSON:
        return {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }

"""Stand-ins for the controllers the emulator has no binary for: Deployment status.

:class:`Deployments` plays kube-controller-manager plus kubelet for Deployments:
after every change it writes ``status`` (observedGeneration, replicas,
updatedReplicas, readyReplicas, availableReplicas), with ready pods only for
Deployments a test marks ready (all by default). It writes straight into the
store, so its writes are not in the request log the tests count.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.emulator.store import Event, Obj, Store


class Deployments:
    """Keeps every Deployment's status as a healthy cluster would (or not, per :meth:`set_ready`)."""

    def __init__(self, store: Store, ready_by_default: bool = True) -> None:
        self.store = store
        self.kind = store.kind("apps", "v1", "deployments")
        self.ready_by_default = ready_by_default
        self._ready: dict[tuple[str, str], bool] = {}

    def __enter__(self) -> Deployments:
        self.store.listeners.append(self._on_event)
        for obj in list(self.store.items(self.kind)):
            self._sync(obj["metadata"]["namespace"], obj["metadata"]["name"])
        return self

    def __exit__(self, *_: Any) -> None:
        self.store.listeners.remove(self._on_event)

    def set_ready(self, namespace: str, name: str, ready: bool) -> None:
        """Make the pods of one Deployment Ready (or not) and update its status now."""
        self._ready[(namespace, name)] = ready
        self._sync(namespace, name)

    def _on_event(self, event: Event) -> None:
        if event.kind == self.kind and event.type != "DELETED":
            meta = event.obj["metadata"]
            # Not from inside the store's own write: schedule the status update.
            asyncio.get_running_loop().call_soon(self._sync, meta["namespace"], meta["name"])

    def _sync(self, namespace: str, name: str) -> None:
        if self.store.find(self.kind, namespace, name) is None:
            return
        ready = self._ready.get((namespace, name), self.ready_by_default)
        self.store.write(self.kind, namespace, name, lambda o: _with_status(o, ready), "status")


def _with_status(obj: Obj, ready: bool) -> Obj:
    replicas = obj.get("spec", {}).get("replicas", 1)
    obj["status"] = {
        "observedGeneration": obj["metadata"].get("generation", 1),
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas if ready else 0,
        "availableReplicas": replicas if ready else 0,
    }
    return obj

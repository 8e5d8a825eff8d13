"""The operator's state and its three entry points: reconcile, child events, health refresh.

One :class:`Controller` is built per ``ballast run`` and handed to the kopf
handlers (no module-level state). Every path that writes for an LLMService holds
that service's lock, renders the desired objects, lets :class:`~.apply.Applier`
bring the children in line, and writes status only when its JSON changed:

* :meth:`reconcile` — kopf's create/update/resume of an LLMService;
* :meth:`child_changed` — a watch event of a managed child (drift: deleted or edited);
* :meth:`refresh` — the health loop saw something change (route, readiness, messages).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from ballast import render
from ballast.controller import status as status_model
from ballast.controller.apply import KINDS, Applier, in_sync, key_of
from ballast.controller.children import Children, Owner, owner_of
from ballast.controller.desired import Desired
from ballast.controller.events import Events
from ballast.controller.health import ServiceHealth, Transition
from ballast.controller.kube import ApiError, KubeClient
from ballast.controller.metrics import Metrics
from ballast.controller.services import LLMSERVICES, Entry, EntryIndex, entry_from, lookup
from ballast.controller.settings import Settings
from ballast.controller.statuswriter import StatusWriter
from ballast.naming import BACKEND_LABEL
from ballast.routing import table_for

Obj = dict[str, Any]
logger = logging.getLogger("ballast.controller")
#: Rendered services kept (a service's child events arrive together; memory matters at 1,000+).
RENDER_CACHE = 64


def fields(owner: Owner, **more: Any) -> dict[str, Any]:
    """Structured log fields (JSON log keys) naming an LLMService."""
    return {"namespace": owner[0], "service": owner[1], **more}


class Controller:
    """Everything one running operator knows, and what it does with it."""

    def __init__(self, settings: Settings, kube: KubeClient, events: Events) -> None:
        self.settings = settings
        self.kube = kube
        self.events = events
        self.metrics = Metrics()
        self.children = Children()
        self.applier = Applier(kube, self.children)
        self.statuses = StatusWriter(kube)
        self.services: EntryIndex | None = None
        self.health: dict[Owner, ServiceHealth] = {}
        #: owner -> (uid, generation) whose children were applied in this process.
        self.applied: dict[Owner, tuple[str | None, int | None]] = {}
        self._locks: dict[Owner, asyncio.Lock] = {}
        #: owners whose children must be applied again (a restore failed).
        self.dirty: set[Owner] = set()
        self.rendered = Desired(RENDER_CACHE)

    @property
    def active(self) -> bool:
        """False while another replica holds the peering lead: background writes pause."""
        return self.events.active

    @active.setter
    def active(self, value: bool) -> None:
        self.events.active = value

    def lock(self, owner: Owner) -> asyncio.Lock:
        return self._locks.setdefault(owner, asyncio.Lock())

    def health_of(self, entry: Entry) -> ServiceHealth:
        """The health state of this incarnation of the service (new on uid change)."""
        state = self.health.get(entry.owner)
        if entry.svc is not None and (state is None or state.uid != entry.uid):
            state = self.health[entry.owner] = ServiceHealth.start(entry.svc)
            state.generation = entry.generation
        elif state is not None and entry.svc is not None and state.generation != entry.generation:
            state.sync(entry.svc, time.monotonic())
            state.generation = entry.generation
        return state or ServiceHealth(uid=entry.uid)

    def known_owners(self) -> set[Owner]:
        """Every LLMService this controller keeps any state for (rejected ones included)."""
        return set(self.health) | set(self.applied) | set(self._locks) | self.statuses.owners()

    def forget(self, owner: Owner) -> None:
        """Drop everything about an LLMService that is gone."""
        self.health.pop(owner, None)
        self.applied.pop(owner, None)
        self._locks.pop(owner, None)
        self.children.forget(owner)
        self.statuses.forget(owner)
        self.metrics.forget(*owner)

    def desired(self, entry: Entry, route: Mapping[str, bool], cache: bool = True) -> list[Obj]:
        return self.rendered.all(entry, route, cache)

    # -- kopf: create / update / resume ----------------------------------------

    async def reconcile(self, body: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        """Bring children and status in line with ``body``; API errors propagate (kopf retries)."""
        entry = entry_from(body)
        if entry is None:
            return
        started = time.monotonic()
        result = "error"
        try:
            async with self.lock(entry.owner):
                result = await self._reconcile(entry, old)
        except ApiError as e:
            self.metrics.reconcile_errors.inc()
            await self._report_failure(entry, e)
            raise
        finally:
            self.metrics.reconciles.labels(result).inc()
            self.metrics.reconcile_duration.observe(time.monotonic() - started)

    async def _reconcile(self, entry: Entry, old: Mapping[str, Any] | None) -> str:
        if entry.error is not None:
            previous = self.statuses.previous(entry)
            status = status_model.rejected(
                entry.error, entry.generation, self.settings.gateway_endpoint, previous
            )
            if await self.statuses.write(entry, status):
                self.events.warn(entry, "SpecRejected", status.conditions[0].message)
            return "invalid"
        state = self.health_of(entry)
        desired = self.desired(entry, state.route())
        before: list[Obj] | None = None
        old_entry = entry_from(old) if old else None
        if old_entry is not None and old_entry.svc is not None:
            before = self.desired(old_entry, state.route(), cache=False)  # same generation key
        applied = await self.applier.apply(entry.owner, entry.uid, desired, before)
        if applied.changed:
            logger.info(
                "applied %s/%s: created=%s patched=%s deleted=%s",
                *entry.owner,
                applied.created,
                applied.patched,
                applied.deleted,
                extra=fields(entry.owner, generation=entry.generation),
            )
        self.applied[entry.owner] = (entry.uid, entry.generation)
        await self._write_status(entry, state)
        return "success"

    async def _report_failure(self, entry: Entry, error: ApiError) -> None:
        """Say in status why children could not be applied (RBAC, quota, admission...)."""
        race = error.status == 409 and error.reason != "NameConflict"
        if entry.svc is None or error.status == 0 or race:
            return  # no answer or a race: the retry will most likely succeed
        status = status_model.apply_failed(
            status_model.observed(
                entry.svc,
                self.health_of(entry),
                entry.generation,
                self.settings.gateway_endpoint,
                self.statuses.previous(entry),
            ),
            f"{error.status} {error.reason}: {error.message}",
        )
        try:
            if await self.statuses.write(entry, status):
                self.events.warn(entry, "ApplyFailed", error.message)
        except ApiError as e:
            logger.warning("cannot report the failure of %s/%s: %s", *entry.owner, e)

    async def _write_status(self, entry: Entry, state: ServiceHealth) -> None:
        if entry.svc is None:
            return
        status = status_model.observed(
            entry.svc,
            state,
            entry.generation,
            self.settings.gateway_endpoint,
            self.statuses.previous(entry),
        )
        await self.statuses.write(entry, status)
        healthy = sum(h.healthy for h in state.backends.values())
        self.metrics.set_backends(entry.namespace, entry.name, healthy, healthy)

    # -- kopf: events of managed children (drift) --------------------------------

    async def child_changed(
        self, kind: str, event_type: str | None, body: Mapping[str, Any]
    ) -> None:
        """Put a child back when it was deleted or edited by hand; delete one no longer desired."""
        found = owner_of(body)
        if (
            found is None
            or kind not in KINDS
            or (body.get("metadata") or {}).get("deletionTimestamp")
        ):
            return
        owner, uid = found
        if kind == "Deployment":
            self._nudge(owner, body)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if event_type != "DELETED" and self.children.echo(
            owner, kind, str(body["metadata"]["name"]), rv
        ):
            return  # the operator's own write coming back
        entry = lookup(self.services, owner)
        if entry is None or entry.svc is None or entry.uid != uid:
            return  # owner gone (garbage collection's job) or rejected: leave it
        if self.applied.get(owner) != (entry.uid, entry.generation):
            return  # a reconcile of this generation is pending and will apply everything
        try:
            async with self.lock(owner):
                await self._restore(entry, kind, event_type, body)
        except ApiError as e:
            logger.warning(
                "restoring %s of %s/%s failed, the health loop retries: %s",
                kind,
                *owner,
                e,
                extra=fields(owner, kind=kind),
            )
            self.dirty.add(owner)

    async def resync(self, entry: Entry) -> None:
        """Apply the whole desired state again (after a failed restore)."""
        if entry.svc is None or self.applied.get(entry.owner) != (entry.uid, entry.generation):
            return
        if not await self._owner_exists(entry):
            return
        async with self.lock(entry.owner):
            desired = self.desired(entry, self.health_of(entry).route())
            await self.applier.apply(entry.owner, entry.uid, desired)

    def _nudge(self, owner: Owner, body: Mapping[str, Any]) -> None:
        """Probe a backend at once when its Deployment's ready count changed (not a period later)."""
        state = self.health.get(owner)
        backend = ((body.get("metadata") or {}).get("labels") or {}).get(BACKEND_LABEL)
        health = state.backends.get(str(backend)) if state is not None else None
        ready = int((body.get("status") or {}).get("readyReplicas") or 0)
        if state is not None and health is not None and health.ready_replicas != ready:
            state.due[str(backend)] = 0.0

    async def _restore(
        self, entry: Entry, kind: str, event_type: str | None, body: Mapping[str, Any]
    ) -> None:
        name = str(body["metadata"]["name"])
        want = self.rendered.one(entry, kind, name, self.health_of(entry).route())
        if want is None:
            if event_type != "DELETED" and await self.applier.remove(entry.owner, kind, name):
                logger.info(
                    "deleted %s %s/%s: no longer desired",
                    kind,
                    entry.namespace,
                    name,
                    extra=fields(entry.owner, kind=kind, child=name),
                )
            return
        if event_type == "DELETED":
            if not await self._owner_exists(entry):
                return
            outcome = await self.applier.restore(entry.owner, want, None)
            how = "was deleted"
        elif in_sync(body, want):
            return
        else:
            outcome = await self.applier.restore(entry.owner, want, body)
            how = "was edited"
        if outcome != "unchanged":
            self.metrics.children_restored.labels(kind).inc()
            self.events.info(entry, "ChildRestored", f"{kind} {name} {how} and has been restored")

    async def _owner_exists(self, entry: Entry) -> bool:
        """The LLMService itself still exists (its deletion also deletes children: not drift)."""
        live = await self.kube.get(LLMSERVICES, entry.namespace, entry.name)
        meta = (live or {}).get("metadata") or {}
        return (
            live is not None and meta.get("uid") == entry.uid and not meta.get("deletionTimestamp")
        )

    # -- the health loop ------------------------------------------------------------

    def _report(self, entry: Entry, t: Transition) -> None:
        if t.direction is None:
            self.events.warn(entry, t.reason, f"backend {t.backend}: {t.message}")
            return
        if t.first:
            return  # a backend coming up for the first time is not a failover
        self.metrics.failover_transitions.labels(t.direction).inc()
        if t.direction == "out":
            self.events.warn(
                entry, "BackendLeftRoute", f"backend {t.backend} left the route: {t.message}"
            )
        else:
            self.events.info(entry, "BackendEnteredRoute", f"backend {t.backend} is in the route")

    async def refresh(self, entry: Entry, transitions: list[Transition]) -> None:
        """Rewrite the routing ConfigMap and status after health changed (only what differs)."""
        if entry.svc is None or self.applied.get(entry.owner) != (entry.uid, entry.generation):
            return  # not reconciled yet: the reconcile will render the current route
        state = self.health_of(entry)
        for t in transitions:
            self._report(entry, t)
        async with self.lock(entry.owner):
            routes = render.routes_configmap(entry.svc, table_for(entry.svc, state.route()))
            have = self.children.of(entry.owner, entry.uid).get(key_of(routes))
            if have is None and not await self._owner_exists(entry):
                return  # deleted (our index lags): its children are the garbage collector's
            await self.applier.ensure(
                entry.owner, routes, exists=have is not None, live_hash=have.hash if have else None
            )
            await self._write_status(entry, state)

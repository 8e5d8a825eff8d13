"""The operator's state and its entry points: reconcile, child events, health refresh, retries.

One :class:`Controller` is built per ``ballast run`` and handed to the kopf
handlers (no module-level state). What it knows about each LLMService is in that
service's :class:`~.record.ServiceRecord`. Every path that writes for a service
holds the record's lock, renders the desired objects, computes a plan
(:mod:`.plan`, pure) and lets :class:`~.apply.Applier` execute it:

* :meth:`reconcile` — kopf's create/update/resume of an LLMService; status is
  then written once by the next health round (after the new backends' first probe),
  not once here and again there, and so is a new service's routes ConfigMap;
* :meth:`child_changed` — a watch event of a managed child (drift: deleted or edited);
* :meth:`refresh` — the health loop saw something change (route, readiness, messages);
* :meth:`retry` — the health loop retries an apply the API refused (see :mod:`.retry`).

A refused apply never propagates to kopf (which would record every retry in
annotations on the LLMService): it becomes one status change and one Event per
cause, and a retry with backoff kept in the record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from ballast import render
from ballast.api import CacheState, CacheStatus, LLMService
from ballast.controller import cache
from ballast.controller import status as status_model
from ballast.controller.apply import Applier
from ballast.controller.children import Child, ChildKey, Children, Owner, owner_of, owners_of
from ballast.controller.demand import Round
from ballast.controller.desired import Rendering, desired_all, desired_one
from ballast.controller.events import Events
from ballast.controller.health import ServiceHealth, Transition
from ballast.controller.kopfstate import KopfState
from ballast.controller.kube import ApiError, Kind, KubeClient
from ballast.controller.metrics import Metrics
from ballast.controller.plan import Create, Delete, key_of, plan, plan_restore
from ballast.controller.record import Failure, Records, ServiceRecord
from ballast.controller.retry import Backoff
from ballast.controller.scaler import (
    AT_ZERO,
    COMING_UP,
    Change,
    Signals,
    powers_for,
    scale_of,
    step,
)
from ballast.controller.services import LLMSERVICES, Entry, EntryIndex, entry_from, lookup
from ballast.controller.settings import Settings
from ballast.controller.statuswriter import StatusWriter, previous
from ballast.naming import BACKEND_LABEL, routes_name
from ballast.naming import backend_name as render_name
from ballast.permissions import SHARED_KINDS
from ballast.render.scale import Scale
from ballast.routing import table_for

Obj = dict[str, Any]
logger = logging.getLogger("ballast.controller")
PODS = Kind("v1", "Pod", "pods")
JOBS = Kind("batch/v1", "Job", "jobs")
#: The label the Job controller puts on its pods.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def fields(owner: Owner, **more: Any) -> dict[str, Any]:
    """Structured log fields (JSON log keys) naming an LLMService."""
    return {"namespace": owner[0], "service": owner[1], **more}


def _reportable(error: ApiError) -> bool:
    """Worth a status condition and an Event (not a lost answer or a race a retry fixes)."""
    return error.status != 0 and not (error.status == 409 and error.reason != "NameConflict")


class Controller:
    """Everything one running operator knows, and what it does with it."""

    def __init__(
        self,
        settings: Settings,
        kube: KubeClient,
        events: Events,
        kopf_state: KopfState | None = None,
    ) -> None:
        self.settings = settings
        #: kopf's per-object state, in memory (dropped with the record, see :mod:`.kopfstate`).
        self.kopf_state = kopf_state if kopf_state is not None else KopfState()
        self.rendering = Rendering(settings.loader_image, settings.engine_peers)
        #: Reconciles that parse, render and apply at once. kopf starts one worker per
        #: LLMService event, so a burst of 1,000 creates would otherwise hold 1,000 parsed
        #: specs and rendered children at the same moment; the rest wait here with nothing
        #: but the body kopf already holds.
        self.admission = asyncio.Semaphore(settings.reconcile_concurrency)
        self.kube = kube
        self.events = events
        self.metrics = Metrics()
        self.records = Records()
        self.children = Children()
        self.applier = Applier(kube, owner_alive=self._owner_alive)
        self.statuses = StatusWriter(kube)
        self.backoff = Backoff(cap=settings.retry_max)
        self.services: EntryIndex | None = None
        #: False while another replica leads: background writes and Events pause.
        self.active = True
        #: Set when the health loop has work now (a reconcile wants its status written).
        self.kick = asyncio.Event()
        #: The gateways' last demand round (scale to zero, standby; see :mod:`.demand`).
        self.demand = Round()
        #: Some LLMService has a backend that can be at 0: the demand reader reads gateways.
        self.holding = False

    def record_of(self, entry: Entry) -> ServiceRecord:
        """The record of this incarnation, its health following the entry's spec generation."""
        replaced = self.records.get(entry.owner)
        record = self.records.of(entry.owner, entry.uid)
        if replaced is not None and replaced is not record:
            self.kopf_state.forget(replaced.uid)  # the incarnation before, deleted and re-created
        if entry.svc is not None:
            if record.health is None:
                record.health = ServiceHealth.start(entry.svc, previous(record, entry))
                record.health.generation = entry.generation
            elif record.health.generation != entry.generation:
                record.health.sync(entry.svc, time.monotonic(), previous(record, entry))
                record.health.generation = entry.generation
        return record

    def observed(self, record: ServiceRecord) -> dict[ChildKey, Child]:
        """The children that exist, counting our own writes the watch has not shown yet."""
        return record.overlay(self.children.of(record.owner, record.uid))

    def scale(self, record: ServiceRecord, entry: Entry, svc: LLMService) -> Scale:
        """The replicas the controller pins for ``svc`` (first sight: read from the children)."""
        if not any(b.holds for b in svc.spec.backends):
            record.powers.clear()
            return Scale()
        shown = previous(record, entry)
        by_name = {b.name: b for b in shown.backends} if shown is not None else {}
        powers_for(svc, record.powers, self.observed(record), by_name, status_model.now_rfc3339())
        return scale_of(svc, record.powers)

    def forget(self, owner: Owner) -> None:
        """Drop everything about an LLMService that is gone."""
        record = self.records.get(owner)
        if record is not None:
            self.kopf_state.forget(record.uid)
        self.records.drop(owner)
        self.metrics.forget(*owner)

    def warn(self, entry: Entry, reason: str, message: str) -> None:
        if self.active:
            self.events.warn(entry, reason, message)

    def info(self, entry: Entry, reason: str, message: str) -> None:
        if self.active:
            self.events.info(entry, reason, message)

    # -- kopf: create / update / resume ----------------------------------------

    async def reconcile(self, body: Mapping[str, Any]) -> None:
        """Bring children in line with ``body``; a refused apply is recorded, never raised."""
        async with self.admission:
            entry = entry_from(body)
            if entry is None:
                return
            record = self.record_of(entry)
            started = time.monotonic()
            result = "error"
            try:
                async with record.lock:
                    result = await self._reconcile(record, entry)
            finally:
                self.metrics.reconciles.labels(result).inc()
                self.metrics.reconcile_duration.observe(time.monotonic() - started)

    async def _reconcile(self, record: ServiceRecord, entry: Entry) -> str:
        if entry.error is not None:
            status = status_model.rejected(
                entry.error,
                entry.generation,
                self.settings.gateway_endpoint,
                previous(record, entry),
            )
            if await self.statuses.write(record, entry, status):
                self.warn(entry, "SpecRejected", status.conditions[0].message)
            return "invalid"
        return "success" if await self._apply(record, entry) else "error"

    async def _apply(self, record: ServiceRecord, entry: Entry) -> bool:
        """Apply every child of ``entry``; False (and the failure recorded) when refused."""
        svc, health = entry.svc, record.health
        if svc is None or health is None:
            return True
        observed = self.observed(record)
        current = cache.uses(svc, observed)
        desired = desired_all(
            svc, health.route(), current, self.rendering, self.scale(record, entry, svc)
        )
        routes = ("ConfigMap", routes_name(svc.name))
        # A new service: its routes are created by the health round that follows (status is
        # written there too), from the first observations, not created here with nothing
        # known and patched a moment later.
        record.routes_deferred = routes not in observed and not health.observed_any
        if record.routes_deferred:
            desired = [o for o in desired if key_of(o) != routes]
        actions = plan(desired, observed, entry.uid)
        kept = cache.keep(svc, current)
        actions = [a for a in actions if not (isinstance(a, Delete) and a.key in kept)]
        try:
            applied = await self.applier.execute(record, actions)
        except ApiError as e:
            await self._failed(record, entry, svc, e)
            return False
        if applied.changed:
            logger.info(
                "applied %s/%s: created=%s patched=%s deleted=%s",
                *entry.owner,
                applied.created,
                applied.patched,
                applied.deleted,
                extra=fields(entry.owner, generation=entry.generation),
            )
        if record.failure is not None:
            logger.info("%s/%s applied after %d failures", *entry.owner, record.failure.attempts)
            self.backoff.succeeded(record.failure.cause)
            record.failure = None
        record.applied = entry.generation
        record.status_due = True
        self.kick.set()
        return True

    async def _failed(
        self, record: ServiceRecord, entry: Entry, svc: LLMService, error: ApiError
    ) -> None:
        """Record a refused apply: backoff in memory, one status change and Event per cause."""
        self.metrics.reconcile_errors.inc()
        cause = f"{entry.namespace} {error.status} {error.reason}"
        failure = record.failure
        if failure is None or failure.cause != cause:
            failure = record.failure = Failure(cause, error.message, error.status)
        else:
            failure.attempts += 1
        failure.next_at = self.backoff.failed(cause, time.monotonic())
        logger.warning(
            "applying %s/%s failed (attempt %d, next in %.0f s): %s",
            *entry.owner,
            failure.attempts,
            max(0.0, failure.next_at - time.monotonic()),
            error,
            extra=fields(entry.owner, reason=error.reason, status=error.status),
        )
        if failure.reported or not _reportable(error) or record.health is None:
            return
        failure.reported = True
        status = status_model.apply_failed(
            status_model.observed(
                svc,
                record.health,
                entry.generation,
                self.settings.gateway_endpoint,
                previous(record, entry),
                powers=record.powers,
            ),
            f"{error.status} {error.reason}: {error.message}",
        )
        try:
            if await self.statuses.write(record, entry, status):
                self.warn(entry, "ApplyFailed", f"{error.message} (retrying with backoff)")
        except ApiError as e:
            logger.warning("cannot report the failure of %s/%s: %s", *entry.owner, e)

    async def retry(self, record: ServiceRecord) -> None:
        """Apply a failing service again (the health loop calls this when its gate opens)."""
        entry = lookup(self.services, record.owner)
        if entry is None or entry.uid != record.uid or entry.svc is None:
            if record.failure is not None:
                self.backoff.succeeded(record.failure.cause)
            record.failure = None  # gone or rejected: nothing to retry
            return
        self.record_of(entry)
        async with record.lock:
            await self._apply(record, entry)

    # -- kopf: events of managed children (drift) --------------------------------

    async def child_changed(
        self,
        kind: str,
        event_type: str | None,
        body: Mapping[str, Any],
        status_only: bool = False,
    ) -> None:
        """Put a child back when it was deleted or edited by hand; delete one no longer desired.

        ``status_only``: only the child's status moved (see :mod:`.watch`): a Deployment's
        ready count is noted, and nothing is rendered (no hand edit to put back).
        """
        meta = body.get("metadata") or {}
        if kind in SHARED_KINDS:
            for owner, uid in owners_of(body):
                await self._cache_changed(owner, uid)
            return
        found = owner_of(body)
        if found is None or meta.get("deletionTimestamp"):
            return
        owner, uid = found
        record = self.records.get(owner)
        if record is None or record.uid != uid:
            return  # not reconciled in this process yet (the reconcile applies everything)
        if kind == "Deployment":
            self._nudge(record, body)
        if status_only:
            return
        key = (kind, str(meta["name"]))
        if event_type != "DELETED" and record.echo(key, meta.get("resourceVersion")):
            return  # the operator's own write coming back
        entry = lookup(self.services, owner)
        if entry is None or entry.svc is None or entry.uid != uid:
            return  # owner gone (garbage collection's job) or rejected: leave it
        if not record.applied_for(entry.generation):
            return  # a reconcile or retry of this generation is pending and applies everything
        async with record.lock:
            try:
                await self._restore(record, entry, entry.svc, key, event_type, body)
            except ApiError as e:
                await self._failed(record, entry, entry.svc, e)

    async def _cache_changed(self, owner: Owner, uid: str) -> None:
        """A cache claim or loader Job of ``owner`` changed: plan the whole service again.

        A finished loader un-holds the Deployment, a deleted one is created again, and
        status (CacheReady) is rewritten by the next health round.
        """
        record = self.records.get(owner)
        entry = lookup(self.services, owner)
        if record is None or record.uid != uid or entry is None or entry.uid != uid:
            return
        if entry.svc is None or not record.applied_for(entry.generation):
            return  # a reconcile or retry of this generation is pending and applies everything
        async with record.lock:
            await self._apply(record, entry)

    def _nudge(self, record: ServiceRecord, body: Mapping[str, Any]) -> None:
        """Probe a backend at once when its Deployment's ready count changed (not a period later)."""
        state = record.health
        backend = ((body.get("metadata") or {}).get("labels") or {}).get(BACKEND_LABEL)
        health = state.backends.get(str(backend)) if state is not None else None
        ready = int((body.get("status") or {}).get("readyReplicas") or 0)
        if state is not None and health is not None and health.ready_replicas != ready:
            state.due[str(backend)] = 0.0

    async def _restore(
        self,
        record: ServiceRecord,
        entry: Entry,
        svc: LLMService,
        key: ChildKey,
        event_type: str | None,
        body: Mapping[str, Any],
    ) -> None:
        route = record.health.route() if record.health else {}
        current = cache.uses(svc, self.observed(record))
        scale = self.scale(record, entry, svc)
        want = desired_one(svc, key[0], key[1], route, current, self.rendering, scale)
        action = plan_restore(key, want, None if event_type == "DELETED" else body)
        if action is None:
            return
        if isinstance(action, Create) and not await self._owner_exists(entry):
            return
        outcome = await self.applier.perform(record, action)
        name = "/".join(key)
        if isinstance(action, Delete):
            logger.info("deleted %s: no longer desired", name, extra=fields(entry.owner))
        elif outcome != "unchanged":
            how = "was deleted" if event_type == "DELETED" else "was edited"
            self.metrics.children_restored.labels(key[0]).inc()
            self.info(entry, "ChildRestored", f"{key[0]} {key[1]} {how} and has been restored")

    async def _owner_alive(self, record: ServiceRecord) -> bool:
        """The record's LLMService incarnation still exists and is not being deleted."""
        return await self._alive(record.owner, record.uid)

    async def _owner_exists(self, entry: Entry) -> bool:
        """The LLMService itself still exists (its deletion also deletes children: not drift)."""
        return await self._alive(entry.owner, entry.uid)

    async def _alive(self, owner: Owner, uid: str | None) -> bool:
        live = await self.kube.get(LLMSERVICES, *owner)
        meta = (live or {}).get("metadata") or {}
        return live is not None and meta.get("uid") == uid and not meta.get("deletionTimestamp")

    # -- the health loop ------------------------------------------------------------

    def _report(self, entry: Entry, t: Transition, record: ServiceRecord) -> None:
        power = record.powers.get(t.backend)
        if t.direction == "out" and power is not None and power.state in AT_ZERO | COMING_UP:
            # taken to 0 on purpose (idle, or a standby cooled down), and perhaps woken again
            # before the health loop saw its pods go: not a failover
            return
        if t.direction is None:
            self.warn(entry, t.reason, f"backend {t.backend}: {t.message}")
            return
        if t.first:
            return  # a backend coming up for the first time is not a failover
        self.metrics.failover_transitions.labels(t.direction).inc()
        if t.direction == "out":
            self.warn(entry, "BackendLeftRoute", f"backend {t.backend} left the route: {t.message}")
        else:
            self.info(entry, "BackendEnteredRoute", f"backend {t.backend} is in the route")

    async def _caches(
        self, record: ServiceRecord, entry: Entry, svc: LLMService, before: Any
    ) -> dict[str, CacheStatus]:
        """``status.backends[].cache`` per cached backend (reads each finished loader once)."""
        backends = cache.cached(svc)
        if not backends:
            return {}
        observed = self.observed(record)
        for job in cache.finished_jobs(svc, observed):
            seen = record.loads.get(job.name)
            if seen is not None and seen[0] == job.phase:
                continue
            try:
                pods = await self.kube.list_matching(
                    PODS, entry.namespace, f"{JOB_NAME_LABEL}={job.name}"
                )
            except ApiError as e:
                logger.warning("cannot read loader %s: %s", job.name, e, extra=fields(entry.owner))
                continue
            record.loads[job.name] = (job.phase, cache.load_result(pods))
            if job.phase == "Failed":
                record.retry_load(job.name, time.monotonic(), self.settings.loader_retry)
        results = {name: result for name, (_, result) in record.loads.items()}
        current = cache.uses(svc, observed)
        shown = {b.name: b.cache for b in before.backends} if before is not None else {}
        return {
            b.name: cache.cache_status(
                svc, b, observed, current[b.name], results, shown.get(b.name)
            )
            for b in backends
        }

    def _cache_events(self, entry: Entry, before: Any, caches: Mapping[str, CacheStatus]) -> None:
        """One Event per cache state change (Downloading, Ready, DownloadFailed, ClaimPending)."""
        shown = {b.name: b.cache for b in before.backends} if before is not None else {}
        for name, now in caches.items():
            was = shown.get(name)
            if was is not None and (was.state, was.key) == (now.state, now.key):
                continue
            text = f"backend {name}: model cache {now.key} {now.state.value}"
            if now.state is CacheState.DOWNLOAD_FAILED:
                self.warn(entry, "CacheDownloadFailed", f"{text}: {now.message}")
            elif now.state is CacheState.READY:
                detail = f" (revision {now.revision})" if now.revision else ""
                self.info(entry, "CacheReady", text + detail)
            else:
                self.info(entry, f"Cache{now.state.value}", text)

    async def retry_loaders(self) -> None:
        """Run failed loader Jobs again once their backoff has passed (delete: re-created)."""
        now = time.monotonic()
        for record in self.records:
            for name, at in list(record.load_retry.items()):
                if at > now:
                    continue
                del record.load_retry[name]
                job = self.observed(record).get(("Job", name))
                if job is None or job.phase != "Failed":
                    continue  # another user of the shared Job restarted it already
                record.loads.pop(name, None)
                try:
                    await self.kube.delete(JOBS, record.owner[0], name)
                except ApiError as e:
                    logger.warning("cannot restart loader %s: %s", name, e)
                    continue
                logger.info("restarting failed loader %s", name, extra=fields(record.owner))

    async def refresh(self, entry: Entry, transitions: list[Transition]) -> bool:
        """Rewrite the routing ConfigMap and status after health changed (only what differs).

        False when the service is not in a state to refresh (not applied yet, failing, gone).
        """
        record = self.records.get(entry.owner)
        svc = entry.svc
        if svc is None or record is None or record.health is None:
            return False
        if record.uid != entry.uid or not record.applied_for(entry.generation):
            return False  # the reconcile or retry of this generation renders the current route
        for t in transitions:
            self._report(entry, t, record)
        state = record.health
        async with record.lock:
            scale = self.scale(record, entry, svc)
            routes = render.routes_configmap(svc, table_for(svc, state.route(), scale.standby_up))
            observed = {k: c for k, c in self.observed(record).items() if k == key_of(routes)}
            gone = not observed and not record.routes_deferred
            if gone and not await self._owner_exists(entry):
                return True  # deleted (our index lags): its children are the garbage collector's
            try:
                await self.applier.execute(record, plan([routes], observed, entry.uid))
            except ApiError as e:
                # refused like any child (a ConfigMap quota, a webhook): one status change and
                # Event, then the backoff's retry applies the service with its routes
                await self._failed(record, entry, svc, e)
                return True
            record.routes_deferred = False
            before = previous(record, entry)
            caches = await self._caches(record, entry, svc, before)
            status = status_model.observed(
                svc,
                state,
                entry.generation,
                self.settings.gateway_endpoint,
                before,
                caches=caches,
                powers=record.powers,
            )
            if await self.statuses.write(record, entry, status):
                self._cache_events(entry, before, caches)
            record.status_due = False
        healthy = sum(h.healthy for h in state.backends.values())
        routed = {b.name: b.in_route for b in status.backends}
        self.metrics.set_backends(entry.namespace, entry.name, healthy, routed)
        return True

    # -- scale to zero and cold standbys (see :mod:`.scaler`) ---------------------

    async def rescale(self, entries: list[Entry]) -> None:
        """Move backends between 0 and up on the gateways' demand and the tiers' health.

        Called by the health loop each round (about once a second); writes only when a
        backend changes state (its Deployment's replicas, its HPA, the route's hold).
        """
        holding = False
        for entry in entries:
            svc = entry.svc
            if svc is None or not any(b.holds for b in svc.spec.backends):
                continue
            holding = True
            record = self.records.get(entry.owner)
            if record is None or record.uid != entry.uid or record.health is None:
                continue
            if not record.applied_for(entry.generation) or record.failure is not None:
                continue  # a reconcile or retry is pending and applies everything
            changes = self._steps(record, entry, svc)
            if not changes:
                continue
            for c in changes:
                self.metrics.scale_transitions.labels(c.after).inc()
                logger.info(
                    "backend %s of %s/%s: %s -> %s: %s", c.backend, *entry.owner,
                    c.before, c.after, c.message,
                    extra=fields(entry.owner, backend=c.backend, state=c.after),
                )  # fmt: skip
                text = f"backend {c.backend}: {c.message}"
                (self.warn if c.warning else self.info)(entry, c.reason, text)
            if not self.active:
                continue
            async with record.lock:
                await self._apply(record, entry)
        self.holding = holding

    def _steps(self, record: ServiceRecord, entry: Entry, svc: LLMService) -> list[Change]:
        self.scale(record, entry, svc)  # a backend seen for the first time gets its state
        health = record.health
        assert health is not None
        observed = self.observed(record)
        now, mono = status_model.now_rfc3339(), time.monotonic()
        changes = []
        for b in svc.spec.backends:
            power = record.powers.get(b.name)
            if power is None:
                continue
            dep = observed.get(("Deployment", render_name(svc.name, b.name)))
            above = [x for x in svc.spec.backends if x.priority < b.priority]
            down = bool(above) and all(
                not (health.backends.get(x.name) and health.backends[x.name].healthy)
                or (entry.namespace, entry.name, x.name) in self.demand.open_circuits
                for x in above
            )
            signals = Signals(
                self.demand.of((entry.namespace, entry.name, b.name)),
                dep.ready_replicas if dep is not None else 0,
                down,
            )
            change = step(b, power, signals, mono, now)
            if change is not None:
                changes.append(change)
        return changes

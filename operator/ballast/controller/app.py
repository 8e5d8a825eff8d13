"""Building and running one operator: kopf settings, login, background tasks, metrics server.

:func:`run` is what ``ballast run`` calls. kopf is configured so that it writes
nothing of its own on LLMServices: no ``status`` field, no finalizer, and no "last
handled" annotation (the digest of the spec handled last is kept in memory, see
:mod:`.kopfstate`). The operator has no deletion handler, daemon or timer (the
health loop is one task for all objects), so deleting an LLMService takes as long
as garbage collection and no longer.
kopf always runs standalone: with several replicas, ``ballast run --leader-elect``
starts kopf only in the replica holding the Lease (:mod:`.leader`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.web
import kopf

from ballast.controller.core import Controller
from ballast.controller.demand import DemandReader, Round
from ballast.controller.events import Events
from ballast.controller.kopfstate import KopfState
from ballast.controller.kube import Kind, KubeClient
from ballast.controller.monitor import Monitor
from ballast.controller.probes import Prober, Secrets
from ballast.controller.settings import Settings
from ballast.controller.watch import ChildWatch, ChildWatches
from ballast.naming import MANAGED_BY
from ballast.permissions import MANAGED_KINDS

logger = logging.getLogger("ballast.controller")
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"


def kopf_settings(settings: Settings, state: KopfState | None = None) -> kopf.OperatorSettings:
    """kopf's settings for Ballast (see the module docstring)."""
    state = state if state is not None else KopfState()
    ks = kopf.OperatorSettings()
    ks.persistence.finalizer = "ballast.dev/finalizer"
    ks.persistence.progress_storage = state.progress
    ks.persistence.diffbase_storage = state.digests
    ks.posting.level = logging.WARNING
    ks.posting.reporting_component = "ballast-operator"
    ks.posting.event_name_prefix = "ballast-"
    ks.watching.server_timeout = settings.watch_timeout
    ks.watching.client_timeout = settings.watch_timeout + 60
    ks.watching.connect_timeout = 10
    ks.networking.request_timeout = 60
    ks.networking.connect_timeout = 10
    ks.execution.max_workers = 4
    # kopf keeps one worker per object alive this long after its last event; at start-up it
    # lists every child of every service at once, so shorter means less memory held (measured
    # -14 MiB RSS at 1,000 services). Never set queueing.worker_limit: kopf's workers wait for
    # every index to fill, so a limit deadlocks the start-up.
    ks.queueing.idle_timeout = 0.5
    return ks


class App:
    """One operator process: the controller plus what runs around it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        state = KopfState()
        self.kopf_settings = kopf_settings(settings, state)
        self.identity = os.environ.get("POD_ID") or f"ballast-{uuid.uuid4().hex[:8]}"
        self.kube = KubeClient(self._credentials, instance=self.identity)
        self.controller = Controller(settings, self.kube, Events(self.kube, self.identity), state)
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._metrics: aiohttp.web.AppRunner | None = None
        self.watches: ChildWatches | None = None

    # -- credentials -------------------------------------------------------------

    def login(self, **kwargs: Any) -> Any:
        """kopf's login: in-cluster ServiceAccount, else kubeconfig (exec plugins via the client)."""
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is not None and not (info.token or info.certificate_path or info.certificate_data):
            info = kopf.login_via_client(**kwargs) or info
        if info is None:
            raise kopf.LoginError("no in-cluster ServiceAccount and no kubeconfig found")
        return info

    async def _credentials(self) -> Any:
        """Fresh credentials for the operator's client (first use, and after a 401).

        Read again each time (a projected ServiceAccount token rotates); the startup
        handler runs before kopf's own login, so this does not wait for kopf's.
        """
        return self.login(logger=logger, settings=self.kopf_settings)

    # -- lifecycle -----------------------------------------------------------------

    async def start(self, indices: dict[str, Any]) -> None:
        """Attach kopf's index, list every managed child, start the health loop and metrics.

        kopf handles no LLMService before this returns, so a reconcile sees every child.
        """
        self.controller.services = indices["llmservices"]
        watches = [
            ChildWatch(
                self.kube,
                Kind(k.api_version, k.kind, k.plural),
                f"{MANAGED_BY_LABEL}={MANAGED_BY}",
                self.controller.child_changed,
                self.settings.namespaces,
                self.settings.watch_timeout,
            )
            for k in MANAGED_KINDS
        ]
        self.controller.children.indices = list(watches)
        self.watches = ChildWatches(watches)
        await self.watches.start()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.settings.probe_concurrency),
            # external APIs are probed the way the gateway reaches them: through HTTPS_PROXY
            # when one is set (keep .svc and the cluster domain in NO_PROXY)
            trust_env=True,
        )
        prober = Prober(
            self._session,
            Secrets(self.kube, self.settings.secret_retry),
            self.settings.probe_url_override,
            self.settings.probe_concurrency,
            self.settings.probe_timeout,
        )
        self._spawn(Monitor(self.controller, prober).run(), "health loop")
        self._spawn(self._demand_reader().run(), "demand reader")
        if self.settings.metrics_port:
            await self._serve_metrics(self.settings.metrics_address, self.settings.metrics_port)

    @contextlib.asynccontextmanager
    async def standby_liveness(self) -> AsyncIterator[None]:
        """Answer the liveness endpoint while waiting for the Lease (kopf serves it after)."""
        if not self.settings.liveness:
            yield
            return
        url = urllib.parse.urlsplit(self.settings.liveness)

        async def alive(_: aiohttp.web.Request) -> aiohttp.web.Response:
            return aiohttp.web.json_response({"standby": True})

        web = aiohttp.web.Application()
        web.router.add_get(url.path or "/", alive)
        runner = aiohttp.web.AppRunner(web, access_log=None)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, url.hostname, url.port or 80).start()
        try:
            yield
        finally:
            await runner.cleanup()

    def _demand_reader(self) -> DemandReader:
        """Reads the gateways' demand while some backend can be at 0 (see :mod:`.demand`)."""
        controller = self.controller
        assert self._session is not None

        def on_round(round_: Round) -> None:
            controller.demand = round_
            controller.metrics.demand_gateways.set(round_.gateways)
            controller.metrics.demand_complete.set(1 if round_.complete else 0)
            if any(d.held for d in round_.demand.values()):
                controller.kick.set()  # a request is waiting: decide now, not a round later

        return DemandReader(
            self._session,
            self.kube,
            service=self.settings.gateway_service,
            urls=self.settings.gateway_demand_urls,
            wanted=lambda: controller.holding,
            on_round=on_round,
        )

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_log_crash)
        self._tasks.append(task)

    async def _serve_metrics(self, address: str, port: int) -> None:
        async def metrics(_: aiohttp.web.Request) -> aiohttp.web.Response:
            body, content_type = self.controller.metrics.exposition()
            return aiohttp.web.Response(body=body, headers={"Content-Type": content_type})

        web = aiohttp.web.Application()
        web.router.add_get("/metrics", metrics)
        self._metrics = aiohttp.web.AppRunner(web, access_log=None)
        await self._metrics.setup()
        await aiohttp.web.TCPSite(self._metrics, address, port).start()

    async def stop(self) -> None:
        await self.controller.events.flush()
        if self.watches is not None:
            await self.watches.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._metrics is not None:
            await self._metrics.cleanup()
        if self._session is not None:
            await self._session.close()
        await self.kube.close()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped: %r", task.get_name(), task.exception())

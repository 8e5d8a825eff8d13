"""The forwarding handler: validate, pick backends, try them in order, pass the answer on.

One :class:`Proxy` per app. Per request: the body is read (bounded) and parsed once; the
model selects a route in the current snapshot; the strategy orders the candidates; each
attempt is admitted by the backend's circuit breaker, limited to ``maxAttempts``, and
retried only on a failure kind listed in ``retryOn``. The first answer that starts is
committed to the client and streamed chunk by chunk; after that nothing is retried, and
a stream that breaks ends with an SSE error event (or an aborted connection for
non-SSE bodies), never a silently short answer. Bodies and keys are never logged.

With client authentication on, a request is refused before its body is read when its key
is missing or unknown (401); after parsing, when the key may not call the model (403) or
is over its rate (429 with ``Retry-After``). The key's id (its Secret), never the key, is
what the log names. A client that disconnects cancels the handler (see
:mod:`~ballast.gateway.server`): the attempt in progress is closed and no other is made.

A backend with ``hold`` whose slices list no ready pod is skipped without an attempt;
when no candidate gives an answer, the request waits for the table's first such backend
(:mod:`~ballast.gateway.hold`) and is then sent to it as usual. A held stream that waits
longer than the keep-alive interval is committed as a ``200`` event stream with SSE
comments while it waits; from then on its end, good or bad, is written into that stream.
Every request and attempt is counted per backend for the demand report
(:mod:`~ballast.gateway.demand`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from aiohttp import web

from ballast.gateway import errors
from ballast.gateway.access import (
    REQUEST_ID_HEADER,
    AccessLog,
    current_request_id,
    request_id,
)
from ballast.gateway.answers import Reading
from ballast.gateway.balancer import Balancer, affinity_key
from ballast.gateway.bodies import BodyError, ParsedBody, parse_body, with_model
from ballast.gateway.breaker import Admission, BreakerBoard, CircuitBreaker
from ballast.gateway.coldstart import ColdStart, answer_error
from ballast.gateway.credentials import Credentials, CredentialsUnavailable
from ballast.gateway.delivery import deliver, deliver_into
from ballast.gateway.demand import DemandBoard
from ballast.gateway.failures import FailureKind, counts_against_backend, retryable
from ballast.gateway.giveup import give_up_response
from ballast.gateway.hold import Holds
from ballast.gateway.intake import IntakeError, check_declared, read_body
from ballast.gateway.keys import ClientKey, Denial, KeyRing
from ballast.gateway.metrics import Metrics
from ballast.gateway.pods import Pod
from ballast.gateway.record import Context, Record
from ballast.gateway.snapshot import TableStore
from ballast.gateway.upstream import (
    Answer,
    Budget,
    Failure,
    UpstreamClient,
    attempt,
    request_headers,
)
from ballast.routing import RouteBackend

log = logging.getLogger(__name__)
#: Where a request's id is kept on the aiohttp request (for the answer's header).
REQUEST_ID = web.RequestKey("ballast_request_id", str)
#: What a visit to one backend ended with, when no answer was sent.
_NEXT, _STOP = object(), object()


class Proxy:
    """Serves ``POST /v1/{chat/completions,completions,embeddings}``."""

    def __init__(
        self,
        *,
        store: TableStore,
        board: BreakerBoard,
        credentials: Credentials,
        metrics: Metrics,
        client: Callable[[], UpstreamClient],
        balancer: Balancer,
        rng: random.Random,
        buffer_limit: int,
        max_body_bytes: int,
        body_timeout: float = 30.0,
        keys: KeyRing | None = None,
        access: AccessLog | None = None,
        holds: Holds | None = None,
        demand: DemandBoard | None = None,
        hold_keepalive: float = 10.0,
    ) -> None:
        self.store, self.board, self.credentials = store, board, credentials
        self.metrics, self.client, self.rng = metrics, client, rng
        self.balancer = balancer
        self.buffer_limit, self.max_body_bytes = buffer_limit, max_body_bytes
        self.body_timeout, self.keys = body_timeout, keys
        self.access = access or AccessLog()
        self.holds = holds or Holds(None, metrics)
        self.cold = ColdStart(self.holds, demand or DemandBoard(), self.end, hold_keepalive)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        rid = request_id(request.headers.get(REQUEST_ID_HEADER))
        request[REQUEST_ID] = rid
        token = current_request_id.set(rid)
        record = Record(rid, request.path, time.perf_counter())
        try:
            response = await self._handle(request, record)
        except asyncio.CancelledError:
            if record.reading is None:  # the client left before an answer: no further attempt
                log.info("model %s: the client left after %d attempt(s)",
                         record.model, record.attempts)  # fmt: skip
                self.end(record, 499, "client_closed")
            raise
        finally:
            current_request_id.reset(token)
        return response

    async def _handle(self, request: web.Request, record: Record) -> web.StreamResponse:
        client: ClientKey | None = None
        if self.keys is not None:
            found = self.keys.authenticate(request.headers.get("Authorization"))
            if isinstance(found, Denial):
                return self._deny(found, request, record)
            client = found
            record.client = client.id
        parsed = await self._read(request)
        if isinstance(parsed, web.Response):
            return self._rejected(record, parsed)
        record.asked = parsed.model[:128]
        record.stream = parsed.doc.get("stream") is True
        if client is not None and self.keys is not None:
            denied = self.keys.admit(client, parsed.model)
            if denied is not None:
                return self._deny(denied, request, record)
        route = self.store.current.routes.get(parsed.model)
        if route is None:
            return self._rejected(record, errors.error_response(
                404,
                f"The model `{parsed.model}` does not exist",
                code="model_not_found",
                param="model",
            ))  # fmt: skip
        record.model = route.table.model
        key = affinity_key(route.balancing, parsed.doc, request.headers)
        ctx = Context(request, parsed, route, request.path[3:], record, key)
        self.metrics.in_flight += 1
        try:
            return await self._serve(ctx)
        finally:
            self.metrics.in_flight -= 1

    def end(self, record: Record, status: int, outcome: str) -> None:
        """The request is over: count it, observe its times and tokens, log its line."""
        now = time.perf_counter()
        elapsed = now - record.start
        model, backend, metrics = record.model, record.backend, self.metrics
        metrics.request(model, backend, outcome, elapsed)
        reading = record.reading
        ttft = None
        if reading is not None:
            if reading.prompt_tokens is not None:
                metrics.tokens(model, backend, "prompt", reading.prompt_tokens)
            if reading.completion_tokens is not None:
                metrics.tokens(model, backend, "completion", reading.completion_tokens)
            if record.stream and reading.first_token is not None:
                ttft = reading.first_token - record.start
                metrics.first_token(model, backend, ttft)
                if reading.completion_tokens is not None and reading.completion_tokens > 1:
                    per = (now - reading.first_token) / (reading.completion_tokens - 1)
                    metrics.per_output_token(model, backend, per)
        if not self.access.wants(status >= 400 or outcome != "ok"):
            return
        fields: dict[str, object] = {
            "request_id": record.request_id,
            "path": record.path,
            "model": record.asked,
            "backend": backend,
            "pod": record.pod,
            "attempts": record.attempts,
            "status": status,
            "outcome": outcome,
            "latency_ms": round(elapsed * 1000, 2),
            "stream": record.stream,
            "client_key": record.client,
        }
        if record.held is not None:
            fields["held_ms"] = round(record.held * 1000, 2)
        if reading is not None:
            if ttft is not None:
                fields["ttft_ms"] = round(ttft * 1000, 2)
            fields["prompt_tokens"] = reading.prompt_tokens
            fields["completion_tokens"] = reading.completion_tokens
            fields["upstream_model"] = reading.upstream_model
        self.access.emit(fields)

    def _rejected(self, record: Record, response: web.Response) -> web.Response:
        self.end(record, response.status, "rejected")
        return response

    def _deny(self, denial: Denial, request: web.Request, record: Record) -> web.Response:
        self.metrics.auth_denied(denial.reason)
        response = errors.error_response(denial.status, denial.message, code=denial.code)
        if denial.retry_after is not None:
            response.headers["Retry-After"] = str(denial.retry_after)
        if denial.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="ballast"'
            if request.can_read_body:
                response.force_close()  # the unread body is not worth reading
        return self._rejected(record, response)

    async def _read(self, request: web.Request) -> ParsedBody | web.Response:
        if "Content-Type" in request.headers:
            mime = request.content_type
            if mime != "application/json" and not mime.endswith("+json"):
                return errors.error_response(
                    415,
                    f"Content-Type must be application/json, not {mime}",
                    code="unsupported_media_type",
                )
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        try:
            check_declared(request.content_length, encoding, self.max_body_bytes)
            raw = await read_body(request.content, encoding, self.max_body_bytes, self.body_timeout)
        except IntakeError as e:
            response = errors.error_response(e.status, str(e), code=e.code)
            response.force_close()  # the rest of the body is never read
            return response
        try:
            return parse_body(raw)
        except BodyError as e:
            param = "model" if "model" in str(e) else None
            return errors.error_response(400, str(e), code="invalid_request", param=param)

    async def _serve(self, ctx: Context) -> web.StreamResponse:
        table = ctx.route.table
        failures: list[Failure] = []
        previous: RouteBackend | None = None
        visited: set[str] = set()
        #: Backends with hold whose every listed pod refused the connection: pods going away
        #: (a scale to zero under way, the slices not updated yet); waited for like a cold one.
        vanished: set[str] = set()
        for backend in ctx.route.router.candidates(self.board, self.rng):
            if ctx.attempts >= table.fallback.max_attempts:
                break
            if self.holds.cold(backend):
                continue  # no ready pod yet: nothing to try (it may be waited for below)
            breaker = self.board.get(table.model, backend.name)
            admission = breaker.admit()
            if admission is Admission.DENIED:
                continue
            visited.add(backend.name)
            tried = len(failures)
            done = await self._admitted(ctx, backend, previous, breaker, admission, failures)
            previous = backend
            if isinstance(done, web.StreamResponse):
                return done
            if done is _STOP:
                return await self._give_up(ctx, failures, previous)
            mine = failures[tried:]
            if (
                backend.hold is not None
                and mine
                and all(f.kind is FailureKind.CONNECT_FAILURE for f in mine)
            ):
                vanished.add(backend.name)
        target = self.holds.target(table)
        if target is not None and (target.name not in visited or target.name in vanished):
            return await self._serve_held(ctx, target, previous, failures, target.name in vanished)
        return await self._give_up(ctx, failures, previous)

    async def _serve_held(
        self,
        ctx: Context,
        backend: RouteBackend,
        previous: RouteBackend | None,
        failures: list[Failure],
        vanished: bool = False,
    ) -> web.StreamResponse:
        """Nothing else answered: wait for ``backend`` (the table's first with ``hold``) to
        have a ready pod unless it has one (``vanished``: the pods listed refused, so wait for
        the slices to list a ready one again), then visit it."""
        waited = False
        if vanished or self.holds.cold(backend):
            refused = await self.cold.hold(ctx, backend)
            if refused is not None:
                return refused
            waited = True
        breaker = self.board.get(ctx.route.table.model, backend.name)
        admission = breaker.admit()
        if admission is Admission.DENIED:
            if not waited:
                return await self._give_up(ctx, failures, previous)
            admission = Admission.CLOSED  # a pod just became ready: it gets its chance
        done = await self._admitted(ctx, backend, previous, breaker, admission, failures)
        if isinstance(done, web.StreamResponse):
            return done
        return await self._give_up(ctx, failures, backend)

    async def _admitted(
        self,
        ctx: Context,
        backend: RouteBackend,
        previous: RouteBackend | None,
        breaker: CircuitBreaker,
        admission: Admission,
        failures: list[Failure],
    ) -> web.StreamResponse | object:
        try:
            return await self._visit(ctx, backend, previous, breaker, admission, failures)
        except BaseException:
            breaker.abandon(admission)
            raise

    async def _visit(
        self,
        ctx: Context,
        backend: RouteBackend,
        previous: RouteBackend | None,
        breaker: CircuitBreaker,
        admission: Admission,
        failures: list[Failure],
    ) -> web.StreamResponse | object:
        """Attempts at one backend: its Service URL once, or its ready pods one after another
        while the failures are retryable. The breaker hears the visit's verdict once."""
        table = ctx.route.table
        try:
            auth = await self.credentials.authorization(backend.credentials)
        except CredentialsUnavailable as e:
            breaker.abandon(admission)  # not the backend's failure
            failure = Failure(FailureKind.CONNECT_FAILURE, f"credentials: {e}")
            ctx.record.attempts += 1
            ctx.record.backend = backend.name
            failures.append(failure)
            self._failed(ctx, backend, None, failure)
            return _NEXT if retryable(failure.kind, table.fallback.retry_on) else _STOP
        pods = self.balancer.pods(table.model, backend)
        tried: list[Pod] = []
        while True:
            pod = None
            if pods is not None:
                pod = self.balancer.choose(
                    table.model, backend.name, pods, ctx.route.balancing, ctx.key, tried
                )
                if pod is None:  # every ready pod tried: the next backend
                    self._verdict(breaker, admission, failures[-1])
                    return _NEXT
            self._count_retry(table.model, previous, backend)
            outcome = await self._send(ctx, backend, pod, auth, breaker, admission)
            if isinstance(outcome, web.StreamResponse):
                return outcome
            failures.append(outcome)
            self._failed(ctx, backend, pod, outcome)
            if not retryable(outcome.kind, table.fallback.retry_on):
                self._verdict(breaker, admission, outcome)
                return _STOP
            if pod is None or ctx.attempts >= table.fallback.max_attempts:
                self._verdict(breaker, admission, outcome)
                return _NEXT
            tried.append(pod)
            previous = backend

    async def _send(
        self,
        ctx: Context,
        backend: RouteBackend,
        pod: Pod | None,
        auth: str | None,
        breaker: CircuitBreaker,
        admission: Admission,
    ) -> web.StreamResponse | Failure:
        """One attempt, counted in flight for the demand report; an answer is delivered."""
        record = ctx.record
        record.attempts += 1
        record.backend = backend.name
        record.pod = pod.name if pod is not None else None
        counts = self.cold.count(ctx, backend)
        counts.in_flight += 1
        if pod is not None:
            pod.start()
        try:
            outcome = await self._attempt(ctx, backend, pod, auth)
            if isinstance(outcome, Failure):
                return outcome
            breaker.success(admission)
            if pod is not None:
                pod.succeeded()
            finish = Finisher(self, ctx.record, backend.name, breaker)
            ctx.committed = True
            if ctx.early is not None:
                return await deliver_into(ctx.request, ctx.early, outcome, finish)
            return await deliver(ctx.request, outcome, finish)
        finally:
            counts.in_flight -= 1
            if pod is not None:
                pod.finish()

    def _failed(self, ctx: Context, backend: RouteBackend, pod: Pod | None, f: Failure) -> None:
        where = backend.name if pod is None else f"{backend.name} pod {pod.name} ({pod.address})"
        log.warning(
            "model %s: backend %s attempt %d failed: %s (%s)%s",
            ctx.route.table.model, where, ctx.attempts, f.kind.value, f.detail,
            f" [client key {ctx.client}]" if ctx.client else "",
        )  # fmt: skip
        if pod is not None and pod.failed(f.kind, self.balancer.clock()):
            self.metrics.pod_ejections.labels(ctx.route.table.model, backend.name).inc()
            log.warning("model %s: pod %s of backend %s ejected for a while",
                        ctx.route.table.model, pod.name, backend.name)  # fmt: skip

    @staticmethod
    def _verdict(breaker: CircuitBreaker, admission: Admission, outcome: Failure) -> None:
        if counts_against_backend(outcome.kind):
            breaker.failure(admission)
        elif outcome.kind is FailureKind.GENERATION_TIMEOUT:
            breaker.abandon(admission)  # a long generation says nothing about the backend
        else:
            breaker.success(admission)

    def _count_retry(
        self, model: str, previous: RouteBackend | None, backend: RouteBackend
    ) -> None:
        if previous is None:
            return
        self.metrics.retries.labels(model).inc()
        if backend.priority > previous.priority:
            self.metrics.fallbacks.labels(model).inc()

    async def _attempt(
        self, ctx: Context, backend: RouteBackend, pod: Pod | None, auth: str | None
    ) -> Answer | Failure:
        body = with_model(ctx.body, backend.upstream_model)
        headers = request_headers(
            ctx.request.headers, auth, ctx.request.remote, ctx.record.request_id
        )
        url = ctx.route.urls[backend.name][ctx.path]
        if pod is not None:
            url = pod.url(url.raw_path)
        fallback = ctx.route.table.fallback
        budget = Budget(
            fallback.per_try_timeout_seconds,
            fallback.generation_timeout_seconds,
            ctx.body.doc.get("stream") is True,
        )
        return await attempt(self.client(), url, body, headers, budget, self.buffer_limit)

    async def _give_up(
        self, ctx: Context, failures: list[Failure], last: RouteBackend | None
    ) -> web.StreamResponse:
        model = ctx.route.table.model
        backend = last.name if last is not None else errors.NO_BACKEND
        response, outcome = give_up_response(model, failures, backend, ctx.attempts)
        ctx.record.backend = backend
        return await answer_error(ctx, response, self.end, outcome)


class Finisher:
    """Records how a committed answer ended: the breaker if the stream broke, then
    :meth:`Proxy.end`."""

    def __init__(self, proxy: Proxy, record: Record, backend: str, breaker: CircuitBreaker):
        self.proxy, self.record, self.backend, self.breaker = proxy, record, backend, breaker
        self.attempts = record.attempts
        self.reading = record.reading = Reading(record.model)

    def done(self, status: int, outcome: str) -> None:
        if outcome == "broken":
            self.breaker.failure(Admission.CLOSED)
        self.proxy.end(self.record, status, outcome)

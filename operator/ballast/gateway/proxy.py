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
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

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
from ballast.gateway.credentials import Credentials, CredentialsUnavailable
from ballast.gateway.delivery import deliver
from ballast.gateway.failures import FailureKind, counts_against_backend, retryable
from ballast.gateway.intake import IntakeError, check_declared, read_body
from ballast.gateway.keys import ClientKey, Denial, KeyRing
from ballast.gateway.metrics import UNKNOWN_MODEL, Metrics
from ballast.gateway.pods import Pod
from ballast.gateway.snapshot import Route, TableStore
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


@dataclass
class Record:
    """What the access log and the request metrics say about one client request."""

    request_id: str
    path: str
    start: float
    #: The model asked for, as the log shows it (cut to 128 characters).
    asked: str = "-"
    #: The served model for metrics: one of the tables', or ``-``.
    model: str = UNKNOWN_MODEL
    backend: str = errors.NO_BACKEND
    pod: str | None = None
    attempts: int = 0
    stream: bool = False
    #: The client key's id (its Secret), for the log; None without authentication.
    client: str | None = None
    reading: Reading | None = None


@dataclass
class Context:
    """One client request on its way through the proxy."""

    request: web.Request
    body: ParsedBody
    route: Route
    path: str
    record: Record
    #: The request's affinity key (prompt prefix or session), None for least loaded.
    key: str | None = None
    #: An answer was handed to delivery (which then records how the request ended).
    committed: bool = False

    @property
    def start(self) -> float:
        return self.record.start

    @property
    def attempts(self) -> int:
        return self.record.attempts

    @property
    def client(self) -> str | None:
        return self.record.client


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
    ) -> None:
        self.store, self.board, self.credentials = store, board, credentials
        self.metrics, self.client, self.rng = metrics, client, rng
        self.balancer = balancer
        self.buffer_limit, self.max_body_bytes = buffer_limit, max_body_bytes
        self.body_timeout, self.keys = body_timeout, keys
        self.access = access or AccessLog()

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
        for backend in ctx.route.router.candidates(self.board, self.rng):
            if ctx.attempts >= table.fallback.max_attempts:
                break
            breaker = self.board.get(table.model, backend.name)
            admission = breaker.admit()
            if admission is Admission.DENIED:
                continue
            try:
                done = await self._visit(ctx, backend, previous, breaker, admission, failures)
            except BaseException:
                breaker.abandon(admission)
                raise
            previous = backend
            if isinstance(done, web.StreamResponse):
                return done
            if done is _STOP:
                break
        return self._give_up(ctx, failures, previous)

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
            record = ctx.record
            record.attempts += 1
            record.backend = backend.name
            record.pod = pod.name if pod is not None else None
            if pod is not None:
                pod.start()
            try:
                outcome = await self._attempt(ctx, backend, pod, auth)
                if isinstance(outcome, Answer):
                    breaker.success(admission)
                    if pod is not None:
                        pod.succeeded()
                    finish = Finisher(self, ctx.record, backend.name, breaker)
                    ctx.committed = True
                    return await deliver(ctx.request, outcome, finish)
            finally:
                if pod is not None:
                    pod.finish()
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

    def _give_up(
        self, ctx: Context, failures: list[Failure], last: RouteBackend | None
    ) -> web.Response:
        model = ctx.route.table.model
        backend = last.name if last is not None else errors.NO_BACKEND
        response, outcome = give_up_response(model, failures, backend, ctx.attempts)
        ctx.record.backend = backend
        self.end(ctx.record, response.status, outcome)
        return response


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


_GIVE_UP = {
    "backend_unavailable": "no backend could be reached",
    "upstream_timeout": "no backend answered in time",
    "bad_gateway": "the backend's answer broke off",
}


def give_up_response(
    model: str, failures: list[Failure], backend: str, attempts: int
) -> tuple[web.Response, str]:
    """The answer when no attempt succeeded, and its metrics outcome."""
    if not failures:
        return errors.error_response(
            503,
            f"no backend of model {model} is available",
            type_=errors.SERVER_ERROR,
            code="no_backend_available",
        ), "unavailable"
    last = failures[-1]
    timeouts = (FailureKind.TIMEOUT, FailureKind.GENERATION_TIMEOUT)
    if all(f.kind in timeouts for f in failures):
        status, code, outcome = 504, "upstream_timeout", "timeout"
    elif last.status and last.body is not None:
        headers = CIMultiDict(last.headers)
        headers[errors.BACKEND_HEADER] = backend
        headers[errors.ATTEMPTS_HEADER] = str(attempts)
        headers["Content-Type"] = last.content_type
        return web.Response(status=last.status, body=last.body, headers=headers), "upstream_error"
    elif last.kind is FailureKind.CONNECT_FAILURE:
        status, code, outcome = 503, "backend_unavailable", "unavailable"
    elif last.kind in timeouts:
        status, code, outcome = 504, "upstream_timeout", "timeout"
    else:
        status, code, outcome = 502, "bad_gateway", "bad_gateway"
    # Generic on purpose: the details (addresses, errno, credential references) are in the
    # gateway's log of each attempt, not for clients.
    message = f"model {model}: {_GIVE_UP[code]} ({len(failures)} attempt(s))"
    response = errors.error_response(
        status, message, type_=errors.SERVER_ERROR, code=code, backend=backend, attempts=attempts
    )
    return response, outcome

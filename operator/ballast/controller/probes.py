"""Active health probes of backends, and the Secrets external backends need for them.

A self-hosted backend is probed at its Service (``http://<svc>-<backend>.<ns>.svc:<port><path>``,
path from ``health.path`` or the engine); an external one with ``GET {url}/models``
and its key as a Bearer token. A 2xx answer within the timeout is a success.
Results carry a reason and a message for status; they never contain the key.
A Secret that is missing is looked up again only after a backoff (doubling up to
ten times ``retry``), so a missing Secret never becomes a request storm.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp

from ballast.api import Backend, LLMService
from ballast.controller.kube import SECRETS, ApiError, KubeClient
from ballast.engines import info
from ballast.naming import backend_name

#: How long a Secret value that was found is reused before it is read again.
SECRET_TTL: Final = 60.0


@dataclass(frozen=True)
class ProbeResult:
    """One probe's outcome; ``reason`` is a CamelCase word for conditions."""

    ok: bool
    reason: str = "ProbeSucceeded"
    message: str = ""


def probe_url(svc: LLMService, backend: Backend, override: Mapping[str, str]) -> str:
    """Where to probe ``backend``: its health path on its Service, or ``{url}/models``."""
    health_path = (backend.health.path if backend.health else None) or info(
        backend.engine
    ).health_path
    if backend.external:
        return f"{(backend.url or '').rstrip('/')}{health_path}"
    key = f"{svc.namespace}/{svc.name}/{backend.name}"
    template = override.get(key) or override.get("*")
    if template:
        base = template.format(namespace=svc.namespace, service=svc.name, backend=backend.name)
    else:
        port = info(backend.engine).port
        base = f"http://{backend_name(svc.name, backend.name)}.{svc.namespace}.svc:{port}"
    return base + health_path


class SecretMissing(Exception):
    """The Secret (or its key) an external backend names does not exist or cannot be read."""

    def __init__(self, message: str, reason: str = "SecretNotFound") -> None:
        super().__init__(message)
        self.reason = reason


class Secrets:
    """Reads Secret keys with a cache for hits and a growing backoff for misses."""

    def __init__(self, kube: KubeClient, retry: float) -> None:
        self.kube = kube
        self.retry = retry
        self._hits: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._misses: dict[tuple[str, str, str], tuple[str, float, int, str]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def get(self, namespace: str, name: str, key: str) -> str:
        """The decoded value, or :class:`SecretMissing` (cached until the backoff expires)."""
        ident = (namespace, name, key)
        now = time.monotonic()
        if (hit := self._hits.get(ident)) and now - hit[1] < SECRET_TTL:
            return hit[0]
        if (miss := self._misses.get(ident)) and now < miss[1]:
            raise SecretMissing(miss[0], miss[3])
        # One lookup at a time per Secret: concurrent probes of many services share it.
        async with self._locks.setdefault((namespace, name), asyncio.Lock()):
            if (hit := self._hits.get(ident)) and time.monotonic() - hit[1] < SECRET_TTL:
                return hit[0]
            if (miss := self._misses.get(ident)) and time.monotonic() < miss[1]:
                raise SecretMissing(miss[0], miss[3])
            return await self._read(ident, miss)

    async def _read(
        self, ident: tuple[str, str, str], miss: tuple[str, float, int, str] | None
    ) -> str:
        namespace, name, key = ident
        now = time.monotonic()
        reason = "SecretNotFound"
        try:
            secret = await self.kube.get(SECRETS, namespace, name)
        except ApiError as e:
            secret, reason = None, "SecretUnreadable"
            message = f"Secret {name} cannot be read: {e.status} {e.reason}"
        raw = ((secret or {}).get("data") or {}).get(key)
        if raw is None:
            if reason == "SecretNotFound":
                message = (
                    f"Secret {name} not found"
                    if secret is None
                    else f"Secret {name} has no key {key}"
                )
            delay = min(self.retry * 2 ** (miss[2] if miss else 0), self.retry * 10)
            self._misses[ident] = (message, now + delay, (miss[2] + 1) if miss else 1, reason)
            self._hits.pop(ident, None)
            raise SecretMissing(message, reason)
        try:
            value = base64.b64decode(raw, validate=True).decode().strip()
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise SecretMissing(
                f"Secret {name} key {key} is not valid base64 text", "SecretUnreadable"
            ) from None
        self._misses.pop(ident, None)
        self._hits[ident] = (value, now)
        return value


class Prober:
    """Probes backends over HTTP with a bounded number in flight."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        secrets: Secrets,
        override: Mapping[str, str],
        concurrency: int,
        max_timeout: float,
    ) -> None:
        self.session = session
        self.secrets = secrets
        self.override = override
        self.max_timeout = max_timeout
        self._slots = asyncio.Semaphore(concurrency)

    async def probe(self, svc: LLMService, backend: Backend) -> ProbeResult:
        headers: dict[str, str] = {}
        if backend.external and backend.api_key_secret_ref is not None:
            ref = backend.api_key_secret_ref
            try:
                headers["Authorization"] = (
                    f"Bearer {await self.secrets.get(svc.namespace, ref.name, ref.key)}"
                )
            except SecretMissing as e:
                return ProbeResult(False, e.reason, str(e))
        url = probe_url(svc, backend, self.override)
        timeout = min(
            float(backend.health.timeout_seconds if backend.health else 5), self.max_timeout
        )
        async with self._slots:
            return await self._get(url, headers, seconds=timeout)

    async def _get(self, url: str, headers: dict[str, str], seconds: float) -> ProbeResult:
        try:
            async with self.session.get(
                url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=seconds),
                allow_redirects=False,
            ) as rsp:
                await rsp.read()
                if 200 <= rsp.status < 300:
                    return ProbeResult(True)
                return ProbeResult(False, "ProbeFailed", f"health check answered HTTP {rsp.status}")
        except TimeoutError:
            return ProbeResult(False, "ProbeTimeout", f"health check took longer than {seconds:g}s")
        except aiohttp.ClientError as e:
            return ProbeResult(False, "ProbeFailed", f"health check failed: {type(e).__name__}")

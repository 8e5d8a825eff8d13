"""Backend API keys from the references in the routing table.

A :class:`~ballast.routing.CredentialRef` names an environment variable, a file, or a key
of a Kubernetes Secret; the value goes upstream as ``Authorization: Bearer <value>``.
Environment variables are read per request. Files are re-read when their mtime or size
changes (checked at most once a second). Secrets are read with a single ``get`` through
the API and cached for ``ttl`` seconds. After that a request still gets the cached value
at once and starts a refresh in the background (one per Secret at a time), so an API
outage never delays requests; a failed refresh keeps the last value and is retried after
a backoff (1 s doubling up to ``ttl``). Only the first read of a Secret is awaited
(bounded by the API client's timeout); when it fails, requests within the backoff fail at
once instead of each waiting for the API. Values never reach logs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ballast.routing import CredentialRef, SecretRef

log = logging.getLogger(__name__)


class CredentialsUnavailable(Exception):
    """A referenced credential could not be read (message names the reference, not a value)."""


class SecretGetter(Protocol):
    async def get_secret_key(self, namespace: str, name: str, key: str) -> str: ...


@dataclass
class _Cached:
    value: str
    checked_at: float
    signature: tuple[int, int] = (0, 0)


@dataclass
class _SecretEntry:
    #: None until the Secret was read once.
    value: str | None
    #: When the next read is due (after ``ttl``, or after a backoff when reads fail).
    refresh_at: float
    failures: int = 0


class Credentials:
    """Resolves credential references to ``Authorization`` header values."""

    def __init__(
        self,
        secrets: SecretGetter | None = None,
        *,
        ttl: float = 60.0,
        retry_after: float = 1.0,
        file_recheck: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._secrets = secrets
        self._ttl = ttl
        self._retry_after = retry_after
        self._file_recheck = file_recheck
        self._clock = clock
        self._environ = os.environ if environ is None else environ
        self._files: dict[str, _Cached] = {}
        self._secret_cache: dict[SecretRef, _SecretEntry] = {}
        self._pending: dict[SecretRef, asyncio.Task[str]] = {}

    async def authorization(self, ref: CredentialRef | None) -> str | None:
        """``Bearer <key>`` for ``ref``, None when it has none; raises CredentialsUnavailable."""
        if ref is None:
            return None
        value = await self._value(ref)
        if not value or any(c in value for c in "\r\n\0"):
            raise CredentialsUnavailable(f"credentials from {_where(ref)} are empty or span lines")
        return "Bearer " + value

    async def _value(self, ref: CredentialRef) -> str:
        if ref.env is not None:
            value = self._environ.get(ref.env)
            if value is None:
                raise CredentialsUnavailable(f"environment variable {ref.env} is not set")
            return value.strip()
        if ref.file is not None:
            return self._from_file(ref.file)
        if ref.secret is None:  # CredentialRef guarantees one source; be explicit anyway
            raise CredentialsUnavailable("empty credentials reference")
        return await self._from_secret(ref.secret)

    def _from_file(self, path: str) -> str:
        now = self._clock()
        cached = self._files.get(path)
        if cached is not None and now - cached.checked_at < self._file_recheck:
            return cached.value
        try:
            st = os.stat(path)
            signature = (st.st_mtime_ns, st.st_size)
            if cached is None or cached.signature != signature:
                value = Path(path).read_text(encoding="utf-8").strip()
                cached = _Cached(value, now, signature)
            cached.checked_at = now
        except (OSError, UnicodeDecodeError) as e:
            raise CredentialsUnavailable(f"cannot read credentials file {path}: {e}") from None
        self._files[path] = cached
        return cached.value

    async def _from_secret(self, ref: SecretRef) -> str:
        entry = self._secret_cache.get(ref)
        due = entry is None or self._clock() >= entry.refresh_at
        if entry is not None and entry.value is not None:
            if due:
                self._refresh(ref)  # in the background: this request uses the cached value
            return entry.value
        if not due:
            raise CredentialsUnavailable(f"cannot read {_secret_where(ref)} (retrying later)")
        return await asyncio.shield(self._refresh(ref))

    def _refresh(self, ref: SecretRef) -> asyncio.Task[str]:
        """The read of ``ref`` in flight, started if there is none."""
        task = self._pending.get(ref)
        if task is None:
            task = asyncio.create_task(self._fetch(ref), name=f"ballast-secret-{ref.name}")
            self._pending[ref] = task
            task.add_done_callback(lambda t: self._fetched(ref, t))
        return task

    def _fetched(self, ref: SecretRef, task: asyncio.Task[str]) -> None:
        self._pending.pop(ref, None)
        if not task.cancelled():
            task.exception()  # reported in _fetch; retrieved so asyncio does not warn

    async def _fetch(self, ref: SecretRef) -> str:
        where = _secret_where(ref)
        if self._secrets is None:
            raise CredentialsUnavailable(f"{where}: no Kubernetes API configured")
        try:
            value = (await self._secrets.get_secret_key(ref.namespace, ref.name, ref.key)).strip()
        except Exception as e:  # any API or decoding problem: report it, keep the old value
            entry = self._secret_cache.get(ref)
            old, failures = (entry.value, entry.failures + 1) if entry else (None, 1)
            delay = min(self._ttl, self._retry_after * 2 ** (failures - 1))
            self._secret_cache[ref] = _SecretEntry(old, self._clock() + delay, failures)
            kept = "keeping the last value" if old is not None else "no value yet"
            log.warning("cannot read %s: %s (%s; next try in %.3gs)", where, e, kept, delay)
            raise CredentialsUnavailable(f"cannot read {where}") from None
        self._secret_cache[ref] = _SecretEntry(value, self._clock() + self._ttl)
        return value

    async def close(self) -> None:
        """Stop reads in flight (app shutdown)."""
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _secret_where(ref: SecretRef) -> str:
    return f"secret {ref.namespace}/{ref.name} key {ref.key}"


def _where(ref: CredentialRef) -> str:
    if ref.env is not None:
        return f"environment variable {ref.env}"
    if ref.file is not None:
        return f"file {ref.file}"
    if ref.secret is not None:
        return f"secret {ref.secret.namespace}/{ref.secret.name} key {ref.secret.key}"
    return "an empty reference"

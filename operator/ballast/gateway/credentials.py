"""Backend API keys from the references in the routing table.

A :class:`~ballast.routing.CredentialRef` names an environment variable, a file, or a key
of a Kubernetes Secret; the value goes upstream as ``Authorization: Bearer <value>``.
Environment variables are read per request. Files are re-read when their mtime or size
changes (checked at most once a second). Secrets are read with a single ``get`` through
the API, cached for ``ttl`` seconds, and refreshed after that; when a refresh fails the
last value stays in use. Values never reach logs.
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


class Credentials:
    """Resolves credential references to ``Authorization`` header values."""

    def __init__(
        self,
        secrets: SecretGetter | None = None,
        *,
        ttl: float = 60.0,
        file_recheck: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._secrets = secrets
        self._ttl = ttl
        self._file_recheck = file_recheck
        self._clock = clock
        self._environ = os.environ if environ is None else environ
        self._files: dict[str, _Cached] = {}
        self._secret_cache: dict[SecretRef, _Cached] = {}
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
        cached = self._secret_cache.get(ref)
        if cached is not None and self._clock() - cached.checked_at < self._ttl:
            return cached.value
        task = self._pending.get(ref)
        if task is None:
            task = asyncio.ensure_future(self._fetch(ref))
            self._pending[ref] = task
            task.add_done_callback(lambda _t: self._pending.pop(ref, None))
        try:
            return await asyncio.shield(task)
        except CredentialsUnavailable:
            if cached is not None:
                return cached.value
            raise

    async def _fetch(self, ref: SecretRef) -> str:
        where = f"secret {ref.namespace}/{ref.name} key {ref.key}"
        if self._secrets is None:
            raise CredentialsUnavailable(f"{where}: no Kubernetes API configured")
        try:
            value = (await self._secrets.get_secret_key(ref.namespace, ref.name, ref.key)).strip()
        except Exception as e:  # any API or decoding problem: report it, keep the old value
            log.warning("cannot read %s: %s", where, e)
            raise CredentialsUnavailable(f"cannot read {where}") from None
        self._secret_cache[ref] = _Cached(value, self._clock())
        return value


def _where(ref: CredentialRef) -> str:
    if ref.env is not None:
        return f"environment variable {ref.env}"
    if ref.file is not None:
        return f"file {ref.file}"
    if ref.secret is not None:
        return f"secret {ref.secret.namespace}/{ref.secret.name} key {ref.secret.key}"
    return "an empty reference"

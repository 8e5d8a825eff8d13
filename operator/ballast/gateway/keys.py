"""Client authentication: API keys from labelled Secrets, held hashed, with per-key limits.

Clients send ``Authorization: Bearer <key>``. Keys live in Secrets of the gateway's own
namespace labelled ``ballast.dev/gateway-key`` (any value); :class:`KeyWatcher` lists and
watches exactly those (a label selector in that one namespace), so adding, changing or
deleting such a Secret takes effect without a restart. A Secret's data:

- ``key`` (required): the key itself, at least 16 characters;
- ``models`` (optional): comma- or space-separated served model names this key may call
  (absent: every model);
- ``requestsPerMinute`` (optional): the key's rate, a token bucket of that size refilled
  evenly over a minute (absent: unlimited).

The ring never holds a key in clear: each is kept as its SHA-256 digest, a presented key
is hashed and looked up by digest, and the match is confirmed with
:func:`hmac.compare_digest` (constant time). A digest lookup reveals nothing about the key
through its timing (finding a key whose digest collides is as hard as guessing it). A key
is known by its id, ``<namespace>/<secret name>``, in logs; keys and ids are never metric
labels.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ballast.gateway.kube import KubeApi, KubeError

log = logging.getLogger(__name__)

KEY_LABEL = "ballast.dev/gateway-key"
MIN_KEY_CHARS = 16
_SPLIT = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class ClientKey:
    """One accepted key: its id, digest and limits (never the key itself)."""

    id: str
    digest: bytes
    #: Served models this key may call; None: all.
    models: frozenset[str] | None = None
    #: Requests per minute; None: unlimited.
    rpm: int | None = None


@dataclass(frozen=True)
class Denial:
    """Why a request is refused: HTTP status, OpenAI error code, message, Retry-After."""

    status: int
    code: str
    message: str
    reason: str
    retry_after: int | None = None


MISSING = Denial(
    401,
    "invalid_api_key",
    "Missing API key: send it as 'Authorization: Bearer <key>'.",
    "missing",
)
UNKNOWN = Denial(401, "invalid_api_key", "Incorrect API key provided.", "unknown")


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


@dataclass
class _Bucket:
    rpm: int
    tokens: float
    stamp: float


@dataclass
class KeyRing:
    """The accepted keys and their rate buckets; swapped per Secret as the watch reports."""

    clock: Callable[[], float] = time.monotonic
    #: True once the key Secrets were listed (until then every request gets 401).
    ready: bool = False
    _by_digest: dict[bytes, ClientKey] = field(default_factory=dict)
    _by_secret: dict[str, ClientKey] = field(default_factory=dict)
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._by_secret)

    def authenticate(self, authorization: str | None) -> ClientKey | Denial:
        """The key an ``Authorization`` header carries, or why it is refused (401)."""
        if not authorization:
            return MISSING
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return MISSING
        presented = digest(token)
        key = self._by_digest.get(presented)
        if key is None or not hmac.compare_digest(key.digest, presented):
            return UNKNOWN
        return key

    def admit(self, key: ClientKey, model: str) -> Denial | None:
        """None when ``key`` may call ``model`` now; else 403 (model) or 429 (rate)."""
        if key.models is not None and model not in key.models:
            return Denial(
                403,
                "model_not_allowed",
                f"This API key may not call the model `{model}`.",
                "model",
            )
        if key.rpm is None:
            return None
        bucket = self._buckets.get(key.id)
        now = self.clock()
        if bucket is None or bucket.rpm != key.rpm:
            bucket = self._buckets[key.id] = _Bucket(key.rpm, float(key.rpm), now)
        rate = key.rpm / 60.0
        bucket.tokens = min(float(key.rpm), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        wait = max(1, math.ceil((1.0 - bucket.tokens) / rate))
        return Denial(
            429,
            "rate_limit_exceeded",
            f"Rate limit of {key.rpm} requests per minute reached for this API key.",
            "rate",
            retry_after=wait,
        )

    def allowed_models(self, key: ClientKey, models: Iterable[str]) -> list[str]:
        return [m for m in models if key.models is None or m in key.models]

    # -- updates from the watch -------------------------------------------------------------

    def reset(self, secrets: Iterable[dict[str, Any]]) -> None:
        """Replace every key with those of ``secrets`` (a fresh list)."""
        self._by_digest.clear()
        self._by_secret.clear()
        for obj in secrets:
            self.apply("ADDED", obj)
        self._buckets = {k: b for k, b in self._buckets.items() if k in self._by_secret}
        self.ready = True

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED) of a key Secret."""
        meta = obj.get("metadata") or {}
        secret_id = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        old = self._by_secret.pop(secret_id, None)
        if old is not None and self._by_digest.get(old.digest) is old:
            del self._by_digest[old.digest]
        if kind == "DELETED":
            self._buckets.pop(secret_id, None)
            log.info("client key %s removed", secret_id)
            return
        key = parse_key_secret(secret_id, obj)
        if key is None:
            return
        if key.digest in self._by_digest:
            other = self._by_digest[key.digest].id
            log.warning("client key %s has the same key as %s; %s is used", secret_id, other, other)
            return
        self._by_secret[secret_id] = key
        self._by_digest[key.digest] = key
        if old is None:
            log.info("client key %s added", secret_id)


def parse_key_secret(secret_id: str, obj: dict[str, Any]) -> ClientKey | None:
    """The key a Secret holds, or None (logged by id, never by value) when unusable."""
    data = obj.get("data") or {}
    try:
        fields = {k: base64.b64decode(v, validate=True).decode("utf-8") for k, v in data.items()}
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError):
        log.warning("client key %s ignored: its data is not valid base64 UTF-8", secret_id)
        return None
    key = fields.get("key", "").strip()
    if len(key) < MIN_KEY_CHARS:
        log.warning(
            "client key %s ignored: data.key must hold at least %d characters",
            secret_id,
            MIN_KEY_CHARS,
        )
        return None
    models: frozenset[str] | None = None
    if fields.get("models", "").strip():
        models = frozenset(m for m in _SPLIT.split(fields["models"].strip()) if m)
    rpm: int | None = None
    if fields.get("requestsPerMinute", "").strip():
        try:
            rpm = int(fields["requestsPerMinute"])
        except ValueError:
            rpm = 0
        if rpm < 1:
            log.warning(
                "client key %s ignored: requestsPerMinute must be a positive integer", secret_id
            )
            return None
    return ClientKey(secret_id, digest(key), models, rpm)


class KeyWatcher:
    """Keeps a :class:`KeyRing` equal to the labelled Secrets of one namespace (list+watch)."""

    def __init__(
        self, api: KubeApi, ring: KeyRing, namespace: str, *, max_backoff: float = 10.0
    ) -> None:
        self.api, self.ring, self.namespace = api, ring, namespace
        self.path = f"/api/v1/namespaces/{namespace}/secrets"
        self._max_backoff = max_backoff

    async def run(self) -> None:
        delay = 0.5
        failing = ""
        while True:
            try:
                items, version = await self.api.list_objects(self.path, KEY_LABEL)
                self.ring.reset(items)
                if failing:
                    log.info("client keys (%s): reading them again", self.namespace)
                failing = ""
                log.info("client keys (%s): %d key(s)", self.namespace, len(self.ring))
                delay = 0.5
                while True:
                    version = await self._watch(version)
            except asyncio.CancelledError:
                raise
            except KubeError as e:
                if e.status == 410:
                    continue
                if str(e) != failing:
                    failing = str(e)
                    log.warning(
                        "client keys (%s) cannot be read (known keys stay): %s",
                        self.namespace,
                        e,
                    )
            except Exception as e:  # malformed data or a bug: never stop following
                log.exception("client keys (%s): unexpected error", self.namespace)
                failing = type(e).__name__
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)

    async def _watch(self, version: str) -> str:
        async for event in self.api.watch_objects(self.path, KEY_LABEL, version):
            if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
                raise KubeError("malformed watch event")
            kind, obj = event.get("type"), event["object"]
            if kind == "ERROR":
                code = obj.get("code")
                status = code if isinstance(code, int) else 0
                raise KubeError(f"watch error: {obj.get('message')}", status)
            version = str((obj.get("metadata") or {}).get("resourceVersion", version))
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self.ring.apply(str(kind), obj)
        return version

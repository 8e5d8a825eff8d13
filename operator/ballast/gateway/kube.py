"""A minimal Kubernetes API client on aiohttp: the calls the gateway is allowed.

The gateway lists and watches ConfigMaps and EndpointSlices and gets single Secrets (see
``ballast.permissions.GATEWAY``), nothing else, so it talks to the API server directly
with aiohttp instead of running the synchronous client in threads. In a pod it uses the
ServiceAccount token (re-read every minute: bound tokens rotate) and CA; outside one it
reads a kubeconfig through the ``kubernetes`` package's loader (imported only then).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp.http_exceptions import LineTooLong

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0
#: One watch event holds a whole ConfigMap (at most 1 MiB of data, plus metadata).
MAX_EVENT_BYTES = 4 * 1024 * 1024


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when there was no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ApiConfig:
    """Where the API server is and how to authenticate to it."""

    host: str
    token: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


def in_cluster_config() -> ApiConfig | None:
    """The pod's ServiceAccount configuration, or None outside a pod."""
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST"),
        os.environ.get("KUBERNETES_SERVICE_PORT"),
    )
    if not host or not port or not (SA_DIR / "token").exists():
        return None
    if ":" in host:
        host = f"[{host}]"
    return ApiConfig(
        host=f"https://{host}:{port}",
        token_file=str(SA_DIR / "token"),
        ca_file=str(SA_DIR / "ca.crt"),
    )


def kubeconfig_config(path: str | None = None, context: str | None = None) -> ApiConfig:
    """The configuration of a kubeconfig (``$KUBECONFIG`` or ``~/.kube/config`` by default)."""
    from kubernetes import client, config  # heavy: only when a kubeconfig is used

    cfg = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, client_configuration=cfg
        )
    except Exception as e:  # the loader raises its own ConfigException, and OSError/ValueError
        raise KubeError(f"cannot use kubeconfig {path or '(default)'}: {e}") from None
    auth = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    token = auth.removeprefix("Bearer ").strip() if isinstance(auth, str) else None
    return ApiConfig(
        host=str(cfg.host).rstrip("/"),
        token=token,
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        verify=bool(cfg.verify_ssl),
    )


def _ssl_context(cfg: ApiConfig) -> ssl.SSLContext | bool:
    if not cfg.host.startswith("https"):
        return False
    if not cfg.verify:
        return False
    ctx = ssl.create_default_context(cafile=cfg.ca_file)
    if cfg.cert_file and cfg.key_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    return ctx


class KubeApi:
    """ConfigMap and EndpointSlice list/watch and Secret get, over one aiohttp session."""

    def __init__(self, cfg: ApiConfig) -> None:
        self.cfg = cfg
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = cfg.token
        self._token_read = 0.0

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(ssl=_ssl_context(self.cfg), limit=16)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self) -> dict[str, str]:
        if self.cfg.token_file and time.monotonic() - self._token_read > TOKEN_REREAD_SECONDS:
            try:
                self._token = Path(self.cfg.token_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as e:
                raise KubeError(f"cannot read the ServiceAccount token: {e}") from None
            self._token_read = time.monotonic()
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise KubeError("KubeApi used before start()")
        return self._session

    async def _get_json(self, path: str, params: Mapping[str, str], seconds: float) -> Any:
        try:
            async with self._http().get(
                self.cfg.host + path,
                params=params,
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise KubeError(f"GET {path}: HTTP {resp.status}", resp.status)
                return json.loads(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise KubeError(f"GET {path}: {e or type(e).__name__}") from None

    async def get_secret_key(self, namespace: str, name: str, key: str) -> str:
        """The decoded value of one key of a Secret (one ``get``)."""
        path = f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
        secret = await self._get_json(path, {}, seconds=10)
        data = secret.get("data") or {}
        if key not in data:
            raise KubeError(f"secret {namespace}/{name} has no key {key}", 404)
        return base64.b64decode(data[key]).decode("utf-8")

    @staticmethod
    def configmaps_path(namespace: str | None) -> str:
        return (
            f"/api/v1/namespaces/{quote(namespace)}/configmaps"
            if namespace
            else "/api/v1/configmaps"
        )

    @staticmethod
    def endpointslices_path(namespace: str | None) -> str:
        root = "/apis/discovery.k8s.io/v1"
        return (
            f"{root}/namespaces/{quote(namespace)}/endpointslices"
            if namespace
            else f"{root}/endpointslices"
        )

    async def list_configmaps(
        self, namespace: str | None, selector: str
    ) -> tuple[list[dict[str, Any]], str]:
        """Every matching ConfigMap and the list's resourceVersion."""
        return await self.list_objects(self.configmaps_path(namespace), selector)

    def watch_configmaps(
        self, namespace: str | None, selector: str, resource_version: str, server_seconds: int = 300
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) from ``resource_version`` until the server ends."""
        path = self.configmaps_path(namespace)
        return self.watch_objects(path, selector, resource_version, server_seconds)

    async def list_objects(self, path: str, selector: str) -> tuple[list[dict[str, Any]], str]:
        """Every object at collection ``path`` matching ``selector``, and the resourceVersion."""
        body = await self._get_json(path, {"labelSelector": selector}, seconds=30)
        return list(body.get("items") or []), str(body["metadata"]["resourceVersion"])

    async def watch_objects(
        self, path: str, selector: str, resource_version: str, server_seconds: int = 300
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events of collection ``path`` from ``resource_version`` until the server ends."""
        params = {
            "labelSelector": selector,
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(server_seconds),
        }
        try:
            async with self._http().get(
                self.cfg.host + path,
                params=params,
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=None, sock_read=server_seconds + 30),
            ) as resp:
                if resp.status != 200:
                    raise KubeError(f"watch {path}: HTTP {resp.status}", resp.status)
                while line := await resp.content.readuntil(b"\n", max_size=MAX_EVENT_BYTES):
                    if line.strip():
                        yield json.loads(line)
        except (aiohttp.ClientError, LineTooLong, TimeoutError, ValueError) as e:
            raise KubeError(f"watch {path}: {e or type(e).__name__}") from None

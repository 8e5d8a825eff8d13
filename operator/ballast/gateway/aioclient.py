"""The upstream client on aiohttp's ``ClientSession``, behind the same interface as :mod:`h1`.

Kept as the conservative alternative (``--upstream-client aiohttp``) and as the baseline
the benchmark compares the lean client against. One shared session: a pooled
``TCPConnector`` with keep-alive and a DNS cache, ``auto_decompress=False`` so bodies
pass through byte for byte. aiohttp's exceptions are mapped to the :mod:`h1` ones.
"""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import Iterable

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ballast.gateway.h1 import BodyError, ConnectError, Disconnected


class AiohttpResponse:
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.reason = resp.reason or ""
        self.headers: CIMultiDictProxy[str] = resp.headers
        self.content_length = resp.content_length

    @property
    def content_type(self) -> str:
        return self._resp.content_type

    async def read_chunk(self) -> bytes:
        try:
            return await self._resp.content.readany()
        except (aiohttp.ClientError, OSError) as e:
            raise BodyError(f"{type(e).__name__}: {e}") from None

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (aiohttp.ClientError, OSError) as e:
            raise BodyError(f"{type(e).__name__}: {e}") from None

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        self._resp.close()


class EnvProxies:
    """HTTP(S)_PROXY and NO_PROXY, read once; the proxy for a URL is cached per host.

    aiohttp's ``trust_env`` does the same lookup (and reads ``~/.netrc``) on every request,
    which tripled the client's CPU per request in bench/README.md.
    """

    def __init__(self) -> None:
        self.proxies = urllib.request.getproxies_environment()

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one instance per client, hosts are few
    def for_url(self, scheme: str, host: str) -> str | None:
        proxy = self.proxies.get(scheme)
        if proxy is None or urllib.request.proxy_bypass(host):  # NO_PROXY / no_proxy
            return None
        return proxy


class AiohttpClient:
    """aiohttp's pooled client; honours HTTP(S)_PROXY and NO_PROXY from the environment."""

    def __init__(self, keepalive: float = 4.0, limit: int = 0) -> None:
        connector = aiohttp.TCPConnector(
            limit=limit, limit_per_host=0, keepalive_timeout=keepalive, ttl_dns_cache=30
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # egress to external APIs often goes through HTTPS_PROXY (NO_PROXY honoured)
        self.env_proxies = EnvProxies()

    async def post(
        self,
        url: URL,
        body: bytes,
        headers: Iterable[tuple[str, str]],
        connect_timeout: float | None = None,
    ) -> AiohttpResponse:
        try:
            proxy = self.env_proxies.for_url(url.scheme, url.host or "")
            timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout)
            resp = await self.session.post(
                url, data=body, headers=CIMultiDict(headers), proxy=proxy, timeout=timeout
            )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            raise ConnectError(str(e) or type(e).__name__) from None
        except (aiohttp.ClientConnectionError, OSError) as e:
            raise Disconnected(f"{type(e).__name__}: {e}") from None
        except aiohttp.ClientError as e:
            raise BodyError(f"{type(e).__name__}: {e}") from None
        return AiohttpResponse(resp)

    async def close(self) -> None:
        await self.session.close()

"""The gateway's settings, as one frozen value built by the CLI (or a test) and passed in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class GatewayConfig:
    """Everything that tunes the gateway; defaults suit a cluster deployment."""

    host: str = "0.0.0.0"
    port: int = 8080
    #: Request bodies above this get 413.
    max_body_bytes: int = 10 * MIB
    #: Local mode: serve this routes file. None: watch ConfigMaps.
    routes_file: Path | None = None
    #: Namespaces whose routing ConfigMaps are watched; empty means all.
    namespaces: tuple[str, ...] = ()
    kubeconfig: str | None = None
    #: How often the routes file is checked for a change.
    poll_interval: float = 0.5
    #: How long a Secret's value is used before it is read again.
    secret_ttl: float = 60.0
    #: How long shutdown waits for in-flight requests.
    shutdown_timeout: float = 30.0
    #: Non-streaming upstream answers up to this size are read whole before the client
    #: sees a byte, so a body that breaks off is still retried; larger ones stream.
    buffer_response_bytes: int = 1 * MIB
    #: Idle keep-alive of pooled upstream connections (below uvicorn's 5 s default, so the
    #: gateway, not the engine, closes idle ones).
    upstream_keepalive: float = 4.0
    #: The upstream HTTP client: "auto" (h1 for http://, aiohttp for https://), "h1" or "aiohttp".
    upstream_client: str = "auto"
    log_level: str = "info"
    #: Port of the metrics listener (``/metrics`` only, apart from the API); None: none.
    metrics_port: int | None = 9090
    #: Client authentication: the namespace whose ``ballast.dev/gateway-key`` Secrets hold
    #: the keys. None: no authentication (local use).
    auth_namespace: str | None = None
    #: A request body must arrive whole within this many seconds (else 408).
    body_timeout: float = 30.0
    #: Client connections one gateway process serves at a time (more get 503 and are closed).
    max_connections: int = 4096
    #: Access log lines: "all", "errors" (failed requests only) or "off".
    access_log: str = "all"
    #: Fraction of the successful requests' lines kept (failed ones are always written).
    access_log_sample: float = 1.0
    #: A held streaming request waiting longer than this gets a 200 event stream with an
    #: SSE comment (``: keep-alive``) every this many seconds until it is sent.
    hold_keepalive_seconds: float = 10.0

"""``ballast gateway``: flags, environment defaults and the server's start.

Imported by ``ballast.cli`` for every command, so at import time it uses only the
standard library; aiohttp and the app are imported inside :func:`main`. Every flag has
an environment variable (``BALLAST_GATEWAY_<FLAG>``) for container use. With
``--routes FILE`` the gateway serves that file (and checks it once before starting, so a
typo fails fast with exit code 2); without it, it watches routing ConfigMaps through the
in-cluster ServiceAccount or, outside a pod, ``--kubeconfig``/``$KUBECONFIG``.

Client authentication (``--auth``): ``keys`` requires a key from the
``ballast.dev/gateway-key`` Secrets of ``--auth-namespace`` (default: the pod's own
namespace, ``$POD_NAMESPACE``); ``none`` serves anyone (for local use). The default is
``keys`` when routing ConfigMaps are watched and ``none`` with ``--routes FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

ENV = "BALLAST_GATEWAY_"
EXIT_OK, EXIT_UNUSABLE = 0, 2


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(ENV + name, default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``ballast gateway`` flags (each defaults from ``BALLAST_GATEWAY_<NAME>``).

    Defaults stay strings: argparse converts them only when ``gateway`` runs, so a bad
    environment value cannot break the other commands.
    """
    _source_arguments(parser)
    _server_arguments(parser)


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    ns = _env("NAMESPACES")
    parser.add_argument(
        "--routes",
        metavar="FILE",
        default=_env("ROUTES"),
        help="serve this routing-table file (YAML/JSON) and reload it on change "
        "[$BALLAST_GATEWAY_ROUTES]; without it, watch routing ConfigMaps",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        default=[n for n in ns.split(",") if n] if ns else None,
        help="watch routing ConfigMaps in NS (repeatable; default: all namespaces) "
        "[$BALLAST_GATEWAY_NAMESPACES, comma-separated]",
    )
    parser.add_argument(
        "--kubeconfig",
        default=_env("KUBECONFIG"),
        help="kubeconfig to use outside a pod [$BALLAST_GATEWAY_KUBECONFIG, $KUBECONFIG]",
    )


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--host", default=_env("HOST", "0.0.0.0"), help="listen address [%(default)s]")
    add("--port", type=int, default=_env("PORT", "8080"), help="listen port [%(default)s]")
    add(
        "--max-body-bytes",
        type=int,
        default=_env("MAX_BODY_BYTES", str(10 * 1024 * 1024)),
        help="largest accepted request body; larger gets 413 [%(default)s]",
    )
    add(
        "--shutdown-timeout",
        type=float,
        default=_env("SHUTDOWN_TIMEOUT", "30"),
        help="seconds to drain in-flight requests on SIGTERM [%(default)s]",
    )
    add(
        "--log-level",
        default=_env("LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="[%(default)s]",
    )
    add(
        "--log-format",
        default=_env("LOG_FORMAT", "json"),
        choices=["json", "text"],
        help="log lines as JSON objects (like the operator's) or text for a terminal [%(default)s]",
    )
    add(
        "--access-log",
        default=_env("ACCESS_LOG", "all"),
        choices=["all", "errors", "off"],
        help="one line per request: every request, failed ones only, or none [%(default)s]",
    )
    add(
        "--access-log-sample",
        type=float,
        default=_env("ACCESS_LOG_SAMPLE", "1"),
        help="fraction of successful requests' access lines kept (failed ones always are) "
        "[%(default)s]",
    )
    add(
        "--upstream-client",
        default=_env("UPSTREAM_CLIENT", "auto"),
        choices=["auto", "h1", "aiohttp"],
        help="upstream HTTP client: auto (h1 for http://, aiohttp for https:// with "
        "HTTPS_PROXY support), the lean built-in h1, or aiohttp's [%(default)s]",
    )
    add("--loop", default=_env("LOOP", "auto"), choices=["auto", "asyncio", "uvloop"],
        help="event loop: uvloop when installed (auto), or force one [%(default)s]")  # fmt: skip
    _guard_arguments(parser)


def _guard_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--metrics-port",
        type=int,
        default=_env("METRICS_PORT", "9090"),
        help="port of the /metrics listener, apart from the API port; 0: no metrics "
        "listener [%(default)s]",
    )
    add(
        "--auth",
        default=_env("AUTH"),
        choices=["keys", "none"],
        help="client authentication: keys (Authorization: Bearer, keys from "
        "ballast.dev/gateway-key Secrets) or none (local use) [keys when watching "
        "ConfigMaps, none with --routes] [$BALLAST_GATEWAY_AUTH]",
    )
    add(
        "--auth-namespace",
        default=_env("AUTH_NAMESPACE", os.environ.get("POD_NAMESPACE")),
        help="namespace of the key Secrets [$BALLAST_GATEWAY_AUTH_NAMESPACE, $POD_NAMESPACE]",
    )
    add(
        "--body-timeout",
        type=float,
        default=_env("BODY_TIMEOUT", "30"),
        help="seconds a request body may take to arrive (else 408) [%(default)s]",
    )
    add(
        "--max-connections",
        type=int,
        default=_env("MAX_CONNECTIONS", "4096"),
        help="client connections served at a time; more get 503 [%(default)s]",
    )
    add(
        "--hold-keepalive-seconds",
        type=float,
        default=_env("HOLD_KEEPALIVE_SECONDS", "10"),
        help="a streaming request held for a backend at zero gets an SSE keep-alive comment "
        "this often once it has waited this long [%(default)s]",
    )


def _new_loop(choice: str) -> asyncio.AbstractEventLoop:
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def main(args: argparse.Namespace) -> int:
    """Run the gateway until SIGINT/SIGTERM; 2 when the routes file is unusable at start."""
    from ballast.gateway import access

    if not 0.0 <= args.access_log_sample <= 1.0:
        print(f"error: --access-log-sample: a fraction from 0 to 1, not {args.access_log_sample}",
              file=sys.stderr)  # fmt: skip
        return EXIT_UNUSABLE
    if not args.hold_keepalive_seconds > 0:
        print(f"error: --hold-keepalive-seconds: more than 0, not {args.hold_keepalive_seconds}",
              file=sys.stderr)  # fmt: skip
        return EXIT_UNUSABLE
    access.configure(args.log_level, args.log_format)
    from ballast.gateway.app import create_app
    from ballast.gateway.config import GatewayConfig
    from ballast.gateway.kube import KubeError
    from ballast.routing import RoutesError

    config = GatewayConfig(
        host=args.host,
        port=args.port,
        max_body_bytes=args.max_body_bytes,
        routes_file=Path(args.routes) if args.routes else None,
        namespaces=tuple(args.namespaces or ()),
        kubeconfig=args.kubeconfig,
        shutdown_timeout=args.shutdown_timeout,
        log_level=args.log_level,
        upstream_client=args.upstream_client,
        metrics_port=args.metrics_port or None,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
        access_log=args.access_log,
        access_log_sample=args.access_log_sample,
        hold_keepalive_seconds=args.hold_keepalive_seconds,
    )
    try:
        source, kube = _source(config)
        config = _with_auth(config, args)
        if config.auth_namespace is not None and kube is None:
            raise ValueError("--auth keys needs the Kubernetes API (--kubeconfig or a pod)")
    except (RoutesError, KubeError, ImportError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_UNUSABLE
    loop = _new_loop(args.loop)
    endpoints, slices = _discovery(config, source, kube)
    app = create_app(config, source, kube=kube, endpoints=endpoints, slices=slices)
    gc.collect()
    gc.freeze()  # startup objects (modules, models) out of the collector's way: shorter pauses
    if config.auth_namespace is None:
        logging.getLogger(__name__).warning(
            "client authentication is off (--auth none): anyone who reaches the gateway "
            "can call every model"
        )
    from ballast.gateway.server import serve

    try:
        loop.run_until_complete(serve(app, config.shutdown_timeout))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return EXIT_OK


def _with_auth(config: Any, args: argparse.Namespace) -> Any:
    """``config`` with the key namespace when authentication is on (its default depends on
    the table source: on for ConfigMaps, off for a routes file)."""
    from dataclasses import replace

    mode = args.auth or ("none" if config.routes_file is not None else "keys")
    if mode == "none":
        return config
    if not args.auth_namespace:
        raise ValueError("--auth keys needs --auth-namespace (or $POD_NAMESPACE)")
    return replace(config, auth_namespace=args.auth_namespace)


def _discovery(config: Any, source: Any, kube: Any) -> tuple[Any, Any]:
    """In a cluster (tables from ConfigMaps): the EndpointSlices of the backends' Services,
    watched in the same namespaces. With a routes file: none (table URLs)."""
    from ballast.gateway.endpoints import Endpoints, SliceWatcher
    from ballast.gateway.watch import ConfigMapSource

    if not isinstance(source, ConfigMapSource):
        return None, None
    endpoints = Endpoints()
    return endpoints, SliceWatcher(kube, endpoints, config.namespaces)


def _source(config: Any) -> tuple[Any, Any]:
    """The table source and (when one is reachable) the Kubernetes API client."""
    from ballast.gateway.kube import KubeApi, in_cluster_config, kubeconfig_config
    from ballast.gateway.sources import FileSource, read_routes
    from ballast.gateway.watch import ConfigMapSource

    api_cfg = in_cluster_config()
    if api_cfg is None and (
        config.kubeconfig or os.environ.get("KUBECONFIG") or config.routes_file is None
    ):
        api_cfg = kubeconfig_config(config.kubeconfig)
    kube = KubeApi(api_cfg) if api_cfg is not None else None
    if config.routes_file is not None:
        read_routes(config.routes_file)  # fail fast on a missing or broken file
        return FileSource(config.routes_file, config.poll_interval), kube
    if kube is None:
        raise ValueError("no --routes file and no Kubernetes API (not in a pod, no kubeconfig)")
    return ConfigMapSource(kube, config.namespaces), kube

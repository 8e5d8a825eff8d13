"""``ballast run``: flags, environment, and starting kopf (imported lazily: this module is light).

Every flag has a ``BALLAST_*`` environment variable (the flag wins). Two replicas
are safe with ``--peering NAME`` (kopf peering: the live replica with the highest
``--priority`` acts, the others stand by; without ``--priority`` each replica
picks a random one, because kopf pauses *every* replica that sees a peer with
the same priority). Peering needs kopf's CRDs (ClusterKopfPeering, KopfPeering,
group kopf.dev); the operator creates the peering object itself when missing.
``--standalone`` runs without peering (one replica).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any, cast

from ballast.controller.settings import Settings, SettingsError, from_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``ballast run``."""
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch LLMServices in this namespace (repeatable; env BALLAST_NAMESPACES, "
        "comma-separated); default: every namespace",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        metavar="NAME",
        help="coordinate replicas through kopf peering object NAME (env BALLAST_PEERING)",
    )
    peering.add_argument(
        "--standalone", action="store_true", help="run without peering (env BALLAST_STANDALONE)"
    )
    parser.add_argument(
        "--priority", type=int, help="peering priority (env BALLAST_PRIORITY); default: random"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="Prometheus /metrics port, 0 disables (env BALLAST_METRICS_PORT, default 9090)",
    )
    parser.add_argument(
        "--metrics-address",
        metavar="ADDR",
        help="address the /metrics server binds (env BALLAST_METRICS_ADDRESS, default 0.0.0.0)",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz (env BALLAST_LIVENESS)",
    )
    parser.add_argument(
        "--gateway-endpoint",
        metavar="URL",
        help="gateway base URL written to status.endpoint (env BALLAST_GATEWAY_ENDPOINT)",
    )
    parser.add_argument(
        "--probe-concurrency",
        type=int,
        metavar="N",
        help="health probes in flight at once (env BALLAST_PROBE_CONCURRENCY, default 64)",
    )
    parser.add_argument(
        "--log-format",
        choices=["json", "plain"],
        help="log format (env BALLAST_LOG_FORMAT, default json)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def settings_from(args: argparse.Namespace) -> Settings:
    return from_flags(
        namespaces=args.namespaces,
        all_namespaces=args.all_namespaces,
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        liveness=args.liveness,
        peering=args.peering,
        standalone=args.standalone,
        priority=args.priority,
        gateway_endpoint=args.gateway_endpoint,
        probe_concurrency=args.probe_concurrency,
        verbose=args.verbose,
        log_format=args.log_format,
    )


def main(args: argparse.Namespace) -> int:
    """Run the operator until it is stopped (SIGINT/SIGTERM); 2 on bad settings."""
    try:
        settings = settings_from(args)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import kopf

    from ballast.controller.app import App
    from ballast.controller.handlers import register

    kopf.configure(
        verbose=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="object",
    )
    if not settings.verbose:
        # kopf logs every handler run at INFO; the operator logs what it changes itself.
        for name in ("kopf.objects", "kopf.activities", "aiohttp.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
    app = App(settings)
    registry = kopf.OperatorRegistry()
    register(registry, app)
    options: dict[str, Any] = {"clusterwide": settings.clusterwide}
    if settings.namespaces:
        options["namespaces"] = list(settings.namespaces)
    asyncio.run(
        kopf.operator(
            registry=registry,
            settings=app.kopf_settings,
            identity=cast(Any, app.identity),  # kopf's Identity is a NewType of str
            standalone=settings.standalone or not settings.peering,
            peering_name=settings.peering,
            priority=settings.priority,
            liveness_endpoint=settings.liveness,
            **options,
        )
    )
    return 0

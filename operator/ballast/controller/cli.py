"""``ballast run``: flags, environment, and starting kopf (imported lazily: this module is light).

Every flag has a ``BALLAST_*`` environment variable (the flag wins). Several
replicas are safe with ``--leader-elect``: each waits for a ``coordination.k8s.io``
Lease (``--lease-name`` in ``--lease-namespace``, default the pod's namespace)
before it starts kopf, and the one holding it acts (see :mod:`.leader`). One
replica runs without it (``--standalone``, the default). ``--peering NAME`` (kopf
peering, before) still works: it turns leader election on with Lease NAME.
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
    election = parser.add_mutually_exclusive_group()
    election.add_argument(
        "--leader-elect",
        action="store_true",
        help="act only while holding a Lease, for several replicas (env BALLAST_LEADER_ELECT)",
    )
    election.add_argument(
        "--standalone",
        action="store_true",
        help="one replica, no leader election: the default (env BALLAST_STANDALONE)",
    )
    election.add_argument("--peering", metavar="NAME", help=argparse.SUPPRESS)  # deprecated
    parser.add_argument("--priority", type=int, help=argparse.SUPPRESS)  # deprecated, ignored
    parser.add_argument(
        "--lease-name",
        metavar="NAME",
        help="the Lease of --leader-elect (env BALLAST_LEASE_NAME, default ballast-operator)",
    )
    parser.add_argument(
        "--lease-namespace",
        metavar="NS",
        help="namespace of the Lease (env BALLAST_LEASE_NAMESPACE, default $POD_NAMESPACE)",
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
        leader_elect=args.leader_elect,
        lease_name=args.lease_name,
        lease_namespace=args.lease_namespace,
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

    kopf.configure(
        verbose=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="object",
    )
    if not settings.verbose:
        # kopf logs every handler run at INFO; the operator logs what it changes itself.
        for name in ("kopf.objects", "kopf.activities", "aiohttp.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
    for flag in settings.deprecated:
        logging.getLogger("ballast.controller").warning("deprecated flag: %s", flag)
    return asyncio.run(_run(settings))


async def _run(settings: Settings) -> int:
    """Wait for the Lease (with leader election), then run kopf until stopped or the Lease is lost."""
    import kopf

    from ballast.controller.app import App
    from ballast.controller.handlers import register
    from ballast.controller.leader import Elector

    app = App(settings)
    registry = kopf.OperatorRegistry()
    register(registry, app)
    options: dict[str, Any] = {"clusterwide": settings.clusterwide}
    if settings.namespaces:
        options["namespaces"] = list(settings.namespaces)
    elector: Elector | None = None
    if settings.leader_election:
        elector = Elector(
            app.kube,
            settings.lease_namespace,
            settings.lease_name,
            app.identity,
            duration=settings.lease_duration,
            renew_every=settings.lease_duration / 3,
        )
        async with app.standby_liveness():
            await elector.acquire()
    stop = asyncio.get_running_loop().create_future()
    lost = False

    async def hold(elector: Elector) -> None:
        nonlocal lost
        await elector.hold()
        lost = True
        app.controller.active = False  # stop background writes at once; kopf stops next
        if not stop.done():
            stop.set_result(None)

    holding = asyncio.create_task(hold(elector)) if elector else None
    try:
        await kopf.operator(
            registry=registry,
            settings=app.kopf_settings,
            identity=cast(Any, app.identity),  # kopf's Identity is a NewType of str
            standalone=True,  # one replica acts: this one (leader election is ours, above)
            liveness_endpoint=settings.liveness,
            stop_flag=stop,
            **options,
        )
    finally:
        if holding is not None:
            holding.cancel()
            await asyncio.gather(holding, return_exceptions=True)
        if elector is not None and not lost:
            await elector.release()
        await app.kube.close()
    return 1 if lost else 0

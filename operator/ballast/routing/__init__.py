"""The routing-table model shared by controller and gateway (the contract), and its parsers."""

from ballast.routing.files import RoutesError, parse_tables
from ballast.routing.table import (
    FORMAT_VERSION,
    SERVICE_PORT_NAME,
    CredentialRef,
    RouteBackend,
    RouteHold,
    RouteLoadBalancing,
    RoutingTable,
    SecretRef,
    ServiceRef,
    Source,
    holds,
    table_for,
)

__all__ = [
    "FORMAT_VERSION",
    "SERVICE_PORT_NAME",
    "CredentialRef",
    "RouteBackend",
    "RouteHold",
    "RouteLoadBalancing",
    "RoutesError",
    "RoutingTable",
    "SecretRef",
    "ServiceRef",
    "Source",
    "holds",
    "parse_tables",
    "table_for",
]

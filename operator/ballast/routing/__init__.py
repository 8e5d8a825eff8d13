"""The routing-table model shared by controller and gateway (the contract), and its parsers."""

from ballast.routing.files import RoutesError, parse_tables
from ballast.routing.table import (
    FORMAT_VERSION,
    CredentialRef,
    RouteBackend,
    RoutingTable,
    SecretRef,
    Source,
    table_for,
)

__all__ = [
    "FORMAT_VERSION",
    "CredentialRef",
    "RouteBackend",
    "RoutesError",
    "RoutingTable",
    "SecretRef",
    "Source",
    "parse_tables",
    "table_for",
]

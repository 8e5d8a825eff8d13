"""The OpenAI-compatible data plane: one endpoint for every model, following the routing tables.

Kept import-light on purpose: ``ballast.cli`` imports :mod:`ballast.gateway.cli` for every
command, so nothing here pulls in aiohttp. The server is built by
:func:`ballast.gateway.app.create_app`.
"""

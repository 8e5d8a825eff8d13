"""The operator: kopf handlers, applying children, health watching, status and events.

Layers, top to bottom: ``cli`` (flags, light) -> ``app`` (kopf settings, login,
background tasks) -> ``handlers`` (thin kopf handlers) -> ``core`` (reconcile,
drift, refresh) and ``monitor`` (the health loop) -> ``apply``, ``statuswriter``,
``events`` -> ``kube`` (the HTTP client). ``health``, ``status``, ``patches`` and
``settings`` are pure. Nothing is imported here, so ``ballast.controller.cli``
stays cheap to import.
"""

"""An external OpenAI-compatible API: no pods, only a route. Probed with GET {url}/models.

It has no image and no ``launch``: :mod:`ballast.render` creates no workload for
it, only its entry in the routing table, whose credentials are a Secret
reference (``apiKeySecretRef``), never the key itself.
"""

from ballast.engines.base import EngineInfo

INFO = EngineInfo(
    image=None,
    port=None,
    health_path="/models",
    metrics_path=None,
    openai_base="",
    run_as_user=None,
)

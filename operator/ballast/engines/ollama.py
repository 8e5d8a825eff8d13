"""Ollama (OpenAI-compatible API under /v1)."""

from ballast.engines.base import EngineInfo

INFO = EngineInfo(
    image="ollama/ollama:0.12.6",
    port=11434,
    health_path="/api/version",
    aliasable=False,
    metrics_path=None,
)

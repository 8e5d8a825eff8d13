"""llama.cpp's llama-server (OpenAI-compatible API under /v1)."""

from ballast.engines.base import EngineInfo

INFO = EngineInfo(
    image="ghcr.io/ggml-org/llama.cpp:server-b6800",
    port=8080,
    health_path="/health",
    metrics_path="/metrics",
)

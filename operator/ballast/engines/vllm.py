"""vLLM: the OpenAI-compatible server of the vllm/vllm-openai image."""

from ballast.engines.base import EngineInfo

INFO = EngineInfo(
    image="vllm/vllm-openai:v0.11.0",
    port=8000,
    health_path="/health",
    metrics_path="/metrics",
)

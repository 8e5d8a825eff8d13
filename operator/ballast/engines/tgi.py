"""Hugging Face Text Generation Inference (OpenAI-compatible Messages API under /v1)."""

from ballast.engines.base import EngineInfo

INFO = EngineInfo(
    image="ghcr.io/huggingface/text-generation-inference:3.3.6",
    port=8080,
    health_path="/health",
    aliasable=False,
    metrics_path="/metrics",
)

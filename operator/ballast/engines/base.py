"""What every engine module declares: image, port, paths, and how it is reached.

An engine module holds facts about one serving engine and nothing that does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineInfo:
    """Static facts about one engine."""

    #: Pinned default container image (never ``latest``).
    image: str | None
    #: Port the engine's HTTP server listens on inside the pod (None for external APIs).
    port: int | None
    #: Path answering 2xx when the engine can serve.
    health_path: str
    #: Prometheus metrics path, if the engine exposes one.
    metrics_path: str | None
    #: Path prefix of the engine's OpenAI-compatible API.
    openai_base: str = "/v1"
    #: True when the engine can serve the model under the LLMService's servedModelName;
    #: otherwise the gateway sends the backend's ``model`` upstream.
    aliasable: bool = True

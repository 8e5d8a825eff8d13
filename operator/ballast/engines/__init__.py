"""One module per serving engine: default image, port, health and metrics paths, command line.

:func:`info` maps an :class:`~ballast.api.Engine` to its module's facts.
"""

from __future__ import annotations

from ballast.api import Engine
from ballast.engines import llamacpp, ollama, openai, tgi, vllm
from ballast.engines.base import EngineInfo

_INFO: dict[Engine, EngineInfo] = {
    Engine.VLLM: vllm.INFO,
    Engine.TGI: tgi.INFO,
    Engine.OLLAMA: ollama.INFO,
    Engine.LLAMACPP: llamacpp.INFO,
    Engine.OPENAI: openai.INFO,
}


def info(engine: Engine) -> EngineInfo:
    """Static facts about ``engine``."""
    return _INFO[engine]


__all__ = ["EngineInfo", "info"]

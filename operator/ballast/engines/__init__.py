"""One module per serving engine: default image, port, health and metrics paths, command line.

:func:`info` maps an :class:`~ballast.api.Engine` to its module's facts;
:func:`launch` gives a self-hosted engine's container arguments, environment and
init step for one backend. Both are pure.
"""

from __future__ import annotations

from ballast.api import Engine
from ballast.engines import llamacpp, ollama, openai, tgi, vllm
from ballast.engines.base import EngineInfo, InitStep, Launch, Launcher, Scratch

_INFO: dict[Engine, EngineInfo] = {
    Engine.VLLM: vllm.INFO,
    Engine.TGI: tgi.INFO,
    Engine.OLLAMA: ollama.INFO,
    Engine.LLAMACPP: llamacpp.INFO,
    Engine.OPENAI: openai.INFO,
}

_LAUNCH: dict[Engine, Launcher] = {
    Engine.VLLM: vllm.launch,
    Engine.TGI: tgi.launch,
    Engine.OLLAMA: ollama.launch,
    Engine.LLAMACPP: llamacpp.launch,
}


def info(engine: Engine) -> EngineInfo:
    """Static facts about ``engine``."""
    return _INFO[engine]


def launch(
    engine: Engine,
    model: str,
    served_model_name: str,
    user_args: tuple[str, ...] = (),
    cache_dir: str | None = None,
) -> Launch:
    """How ``engine``'s container starts; ValueError for an external engine (no pods).

    ``cache_dir``: the model is in this (read-only) directory, filled by the cache loader.
    """
    try:
        launcher = _LAUNCH[engine]
    except KeyError:
        raise ValueError(f"engine {engine.value} runs no pods") from None
    return launcher(model, served_model_name, user_args, cache_dir)


__all__ = ["EngineInfo", "InitStep", "Launch", "Scratch", "info", "launch"]

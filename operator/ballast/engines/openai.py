"""An external OpenAI-compatible API: no pods, only a route. Probed with GET {url}/models."""

from ballast.engines.base import EngineInfo

INFO = EngineInfo(image=None, port=None, health_path="/models", metrics_path=None, openai_base="")

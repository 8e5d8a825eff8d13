"""Small factories for typed LLMService models, shared by the render (and later) tests.

``make_llmservice(vllm(), external())`` returns a parsed :class:`LLMService`;
the backend helpers return the backend's plain-JSON spec with a sensible model
per engine, overridable field by field (camelCase, as in YAML).
"""

from __future__ import annotations

from typing import Any

from ballast.api import LLMService, parse_llmservice

Obj = dict[str, Any]

MODELS = {
    "vllm": "meta-llama/Llama-3.1-8B-Instruct",
    "tgi": "mistralai/Mistral-7B-Instruct-v0.3",
    "ollama": "qwen2.5:1.5b",
    "llamacpp": "bartowski/Phi-3.5-mini-instruct-GGUF:Q4_K_M",
    "openai": "gpt-4o-mini",
}
SELF_HOSTED = ("vllm", "tgi", "ollama", "llamacpp")


def backend(engine: str, name: str | None = None, **fields: Any) -> Obj:
    """A backend spec for ``engine`` (named after it unless ``name`` is given)."""
    out: Obj = {"name": name or engine, "engine": engine, "model": MODELS[engine]}
    if engine == "openai":
        out["url"] = "https://api.example.com/v1"
    return {**out, **fields}


def vllm(name: str = "primary", **fields: Any) -> Obj:
    return backend("vllm", name, **fields)


def external(name: str = "cloud", **fields: Any) -> Obj:
    fields.setdefault("priority", 1)
    fields.setdefault("apiKeySecretRef", {"name": "llm-keys", "key": "openai"})
    return backend("openai", name, **fields)


def llmservice_obj(
    *backends: Obj, name: str = "chat", namespace: str = "ai", uid: str | None = None, **spec: Any
) -> Obj:
    """The raw object; default backends: one vLLM primary and one external fallback."""
    metadata: Obj = {"name": name, "namespace": namespace}
    if uid is not None:
        metadata["uid"] = uid
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": metadata,
        "spec": {"backends": list(backends or (vllm(), external())), **spec},
    }


def make_llmservice(*backends: Obj, **kwargs: Any) -> LLMService:
    """A parsed LLMService (raises SpecError for an invalid one)."""
    return parse_llmservice(llmservice_obj(*backends, **kwargs))

"""llama.cpp's llama-server (OpenAI-compatible API under /v1).

Command line, after the image's ENTRYPOINT (``/app/llama-server``): ``--host
0.0.0.0 --port 8080 --metrics --alias <servedModelName>``, then the model, then
the user's ``args``. How ``model`` is read:

* ``http://…`` or ``https://…``: a GGUF file to download, ``--model-url``;
* an absolute or relative path, or anything ending in ``.gguf``: a file already
  in the container (an image or a volume), ``--model``;
* otherwise a Hugging Face repository with an optional quantization tag,
  ``owner/repo[:quant]``, downloaded with ``--hf-repo`` (llama.cpp picks Q4_K_M
  when the tag is missing).

Downloads go to ``LLAMA_CACHE`` under HOME, an emptyDir. ``/health`` answers 503
while the model loads and 200 once it can serve; ``--metrics`` turns on
``/metrics``.

Security: the image's entrypoint is a static C++ binary that runs as any UID, so
the pod meets the "restricted" profile with no exception, and the root
filesystem is read-only (llama-server writes only to LLAMA_CACHE and /tmp).
"""

import re

from ballast.engines.base import BASE_ENV, HOME, HOME_DIR, TMP, EngineInfo, Launch

PORT = 8080

INFO = EngineInfo(
    image="ghcr.io/ggml-org/llama.cpp:server-b6800",
    port=PORT,
    health_path="/health",
    metrics_path="/metrics",
    read_only_root_filesystem=True,
    scratch=(HOME, TMP),
)

_URL = re.compile(r"^https?://", re.IGNORECASE)


def model_flag(model: str) -> str:
    """The llama-server flag that loads ``model``: --model-url, --model or --hf-repo."""
    if _URL.match(model):
        return "--model-url"
    if model.startswith(("/", "./", "../")) or model.lower().endswith(".gguf"):
        return "--model"
    return "--hf-repo"


#: The file the cache loader links to the GGUF it downloaded.
CACHED_FILE = "model.gguf"
#: llama.cpp's own choice when ``owner/repo`` names no quantization.
DEFAULT_QUANT = "Q4_K_M"


def hf_source(model: str) -> tuple[str, str]:
    """``owner/repo[:quant]`` as (repository, quantization), llama.cpp's default when untagged."""
    repo, _, quant = model.partition(":")
    return repo, quant or DEFAULT_QUANT


def launch(
    model: str, served_model_name: str, user_args: tuple[str, ...], cache_dir: str | None = None
) -> Launch:
    """llama-server's arguments for ``model`` served as ``served_model_name``.

    From a cache, ``--model`` is the GGUF the loader linked as ``model.gguf``.
    """
    own: tuple[str, ...] = ("--host", "0.0.0.0", "--port", str(PORT), "--metrics")
    if cache_dir is not None:
        own += ("--alias", served_model_name, "--model", f"{cache_dir}/{CACHED_FILE}")
    else:
        own += ("--alias", served_model_name, model_flag(model), model)
    env = (*BASE_ENV, ("LLAMA_CACHE", f"{HOME_DIR}/.cache/llama.cpp"))
    return Launch(args=own + user_args, env=env)

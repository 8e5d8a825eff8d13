"""vLLM: the OpenAI-compatible server of the ``vllm/vllm-openai`` image.

Command line: ``--model <model> --served-model-name <servedModelName> --host
0.0.0.0 --port 8000`` after the image's ENTRYPOINT, then the user's ``args``
(vLLM's argparse lets a later flag override an earlier one). The served model
name is the LLMService's, so the gateway can send it unchanged (``aliasable``).

Pod needs: ``/dev/shm`` as a memory-backed emptyDir (NCCL and tensor-parallel
workers exchange data through it; the container default of 64Mi breaks them),
``HOME`` and ``/tmp`` on emptyDirs for the Hugging Face download cache and the
Triton/torch.compile/FlashInfer JIT caches. ``USER`` is set because torch's
cache code calls ``getpass.getuser()``, which fails for a UID without a passwd
entry. Usage statistics are switched off (``VLLM_NO_USAGE_STATS``); a user
``env`` entry of the same name overrides it.

Security: the image runs as root by default but works as UID 1000 (Python and
the packages are world-readable; every write goes to HOME, /tmp or /dev/shm), so
the pod meets the "restricted" profile with no exception. The root filesystem
stays writable: several JIT layers (numba, Triton, outlines) write next to
their own files or into paths this module cannot all enumerate.
"""

from ballast.engines.base import BASE_ENV, HOME, OFFLINE_ENV, SHM, TMP, EngineInfo, Launch

PORT = 8000

INFO = EngineInfo(
    image="vllm/vllm-openai:v0.11.0",
    port=PORT,
    health_path="/health",
    metrics_path="/metrics",
    scratch=(HOME, TMP, SHM),
)


def launch(
    model: str, served_model_name: str, user_args: tuple[str, ...], cache_dir: str | None = None
) -> Launch:
    """vLLM's arguments for ``model`` served as ``served_model_name``.

    From a cache, ``--model`` is the cache directory (a snapshot of the repository) and
    the Hugging Face libraries run offline.
    """
    source = cache_dir if cache_dir is not None else model
    own: tuple[str, ...] = ("--model", source, "--served-model-name", served_model_name)
    own += ("--host", "0.0.0.0", "--port", str(PORT))
    env = (*BASE_ENV, ("VLLM_NO_USAGE_STATS", "1"))
    if cache_dir is not None:
        env += OFFLINE_ENV
    return Launch(args=own + user_args, env=env)

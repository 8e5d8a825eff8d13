"""Hugging Face Text Generation Inference (OpenAI-compatible Messages API under /v1).

Command line: ``--model-id <model> --hostname 0.0.0.0 --port 8080`` after the
image's ENTRYPOINT (``/tgi-entrypoint.sh`` -> ``text-generation-launcher``),
then the user's ``args``. TGI answers under the model it loaded, so the gateway
sends the backend's ``model`` upstream (not ``aliasable``).

Pod needs: ``/data`` on an emptyDir (the image sets ``HF_HOME=/data``, where the
weights are downloaded), ``/tmp`` (the launcher's shard sockets) and ``/dev/shm``
memory-backed for NCCL when the model is sharded across GPUs.

Security exception ``runAsNonRoot``: TGI 3.x images install their Python
interpreter with ``uv python install`` under ``/root/.local/share/uv`` (see
``LD_LIBRARY_PATH`` in the upstream Dockerfile), which only root can read, so the
container keeps the image's root user. Everything else of the restricted profile
still holds: no privilege escalation, every capability dropped (root without
CAP_DAC_OVERRIDE cannot write files it does not own), seccomp RuntimeDefault.
Use an image built for a non-root user and the exception can go.
"""

from ballast.engines.base import OFFLINE_ENV, SHM, TMP, EngineInfo, Env, Launch, Scratch

PORT = 8080

INFO = EngineInfo(
    image="ghcr.io/huggingface/text-generation-inference:3.3.6",
    port=PORT,
    health_path="/health",
    aliasable=False,
    metrics_path="/metrics",
    run_as_user=None,
    scratch=(Scratch("data", "/data"), TMP, SHM),
    pod_security_exceptions=("runAsNonRoot",),
)

_ENV: Env = (("HF_HOME", "/data"),)


def launch(
    model: str, served_model_name: str, user_args: tuple[str, ...], cache_dir: str | None = None
) -> Launch:
    """TGI's arguments for ``model`` (the served name is not passed: TGI is not aliasable).

    From a cache, ``--model-id`` is the cache directory and ``--served-model-name`` keeps
    the name TGI answers under equal to ``model`` (what the gateway sends upstream).
    """
    if cache_dir is None:
        own: tuple[str, ...] = ("--model-id", model)
        env = _ENV
    else:
        own = ("--model-id", cache_dir, "--served-model-name", model)
        env = (*_ENV, *OFFLINE_ENV)
    own += ("--hostname", "0.0.0.0", "--port", str(PORT))
    return Launch(args=own + user_args, env=env)

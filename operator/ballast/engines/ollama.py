"""Ollama (OpenAI-compatible API under /v1).

Command line: ``serve`` after the image's ENTRYPOINT (``/bin/ollama``), then the
user's ``args``. ``ollama serve`` takes its settings from the environment
(``OLLAMA_CONTEXT_LENGTH``, ``OLLAMA_NUM_PARALLEL``, …), so ``env`` is where most
Ollama tuning goes. Ollama answers under the tag it pulled, so the gateway sends
the backend's ``model`` upstream (not ``aliasable``).

Pulling the model before ready: an init container ``pull-model`` (same image,
volumes and security context) starts ``ollama serve`` on loopback, runs ``ollama
pull <model>`` into HOME (an emptyDir shared with the server container) and
exits. The server container only starts once the model is on disk, so its
readiness probe (``/api/version``) answering means the model can be served. We
chose this over a postStart hook (which blocks the container with no timeout and
no log of its own) and over pulling inside the startup probe (a long-running
exec probe): a failed pull is visible as ``Init:Error`` with its own logs and is
retried by the kubelet. A container restart does not pull again (the emptyDir
survives it); a new pod does. The pull's wait for the server is bounded (60s);
the download itself is bounded only by the kubelet, like an image pull. The
model name reaches the script as an environment variable, never spliced into
the shell text. ``OLLAMA_KEEP_ALIVE=-1`` keeps the model loaded after the first
request instead of unloading it after five idle minutes.

Security: the image runs as root by default but ``ollama`` runs as any UID once
HOME is writable (models and its key pair live in ``$HOME/.ollama``), so the pod
meets the "restricted" profile with no exception, with a read-only root
filesystem.
"""

from ballast.engines.base import BASE_ENV, HOME, TMP, EngineInfo, InitStep, Launch

PORT = 11434

INFO = EngineInfo(
    image="ollama/ollama:0.12.6",
    port=PORT,
    health_path="/api/version",
    aliasable=False,
    metrics_path=None,
    read_only_root_filesystem=True,
    scratch=(HOME, TMP),
)

MODEL_ENV = "BALLAST_OLLAMA_MODEL"

#: Start a loopback server, wait (bounded) until it answers, pull, stop it.
PULL_SCRIPT = (
    "ollama serve & pid=$!; i=0; until ollama list >/dev/null 2>&1; do i=$((i+1)); "
    'if [ "$i" -gt 60 ]; then echo "ollama did not start" >&2; exit 1; fi; sleep 1; done; '
    f'ollama pull "${MODEL_ENV}"; rc=$?; kill "$pid"; wait "$pid"; exit "$rc"'
)

#: The cache loader (a Job, same image): pull into ``OLLAMA_MODELS`` on the cache volume once,
#: then write the completion marker last and the result to the termination log. Skips
#: everything when the marker is there. Model and directory come from the environment.
LOADER_SCRIPT = (
    'dest="$BALLAST_CACHE_DIR"; log="${BALLAST_TERMINATION_LOG:-/dev/termination-log}"; '
    'if [ -f "$dest/.ballast-complete" ]; then cat "$dest/.ballast-complete" > "$log"; exit 0; fi; '
    'mkdir -p "$dest" || exit 2; '
    "ollama serve >/tmp/serve.log 2>&1 & pid=$!; i=0; "
    "until ollama list >/dev/null 2>&1; do i=$((i+1)); "
    'if [ "$i" -gt 60 ]; then echo "ollama did not start" | tee "$log" >&2; exit 1; fi; sleep 1; done; '
    f'if ! ollama pull "${MODEL_ENV}" 2>/tmp/pull.err; then '
    'tail -c 1000 /tmp/pull.err | tee "$log" >&2; kill "$pid"; exit 1; fi; '
    'kill "$pid"; wait "$pid" 2>/dev/null; bytes=$(du -sb "$dest" | cut -f1); '
    f'printf \'{{"source":"ollama","model":"%s","bytes":%s}}\' "${MODEL_ENV}" "$bytes" '
    '> "$dest/.ballast-complete.tmp" && mv "$dest/.ballast-complete.tmp" "$dest/.ballast-complete" '
    '&& printf \'{"revision":null,"bytes":%s}\' "$bytes" > "$log"'
)


def launch(
    model: str, served_model_name: str, user_args: tuple[str, ...], cache_dir: str | None = None
) -> Launch:
    """``ollama serve`` plus an init step that pulls ``model`` first.

    From a cache, the models directory is the cache (``OLLAMA_MODELS``), nothing is
    pulled, and ``OLLAMA_NOPRUNE`` keeps the server from pruning the read-only blobs.
    """
    env = (*BASE_ENV, ("OLLAMA_HOST", f"0.0.0.0:{PORT}"), ("OLLAMA_KEEP_ALIVE", "-1"))
    if cache_dir is not None:
        env += (("OLLAMA_MODELS", cache_dir), ("OLLAMA_NOPRUNE", "1"))
        return Launch(args=("serve", *user_args), env=env)
    pull = InitStep(
        name="pull-model",
        command=("/bin/sh", "-c", PULL_SCRIPT),
        env=(*BASE_ENV, ("OLLAMA_HOST", "127.0.0.1:11434"), (MODEL_ENV, model)),
    )
    return Launch(args=("serve", *user_args), env=env, init=pull)

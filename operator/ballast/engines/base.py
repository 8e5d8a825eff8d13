"""What every engine module declares: image, port, paths, pod needs, and its command line.

An engine module holds facts about one serving engine and one pure function,
``launch``, that turns a backend's model, the served model name and the user's
extra args into the container's arguments, environment and (optionally) an init
step. Nothing here does I/O; :mod:`ballast.render` turns these facts into
Kubernetes objects.

Conventions shared by every self-hosted engine:

* The image's ENTRYPOINT is kept and only ``args`` are set, so a custom image of
  the same engine (a CUDA or ROCm build, a fork) works unchanged.
* The engine's own arguments come first and the user's ``args`` last, so a user
  flag repeated later on the command line wins where the engine's parser allows.
* Pods run as UID/GID :data:`NON_ROOT_UID` with ``HOME`` on an emptyDir
  (:data:`HOME_DIR`) and ``/tmp`` on an emptyDir, unless the engine module
  documents an exception in ``pod_security_exceptions``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

#: The UID and GID engines run as when the image allows a non-root user.
NON_ROOT_UID = 1000
#: HOME of the engine process: a writable emptyDir, so caches (Hugging Face, Triton,
#: llama.cpp, Ollama's models) have somewhere to go when the image's HOME is /root.
HOME_DIR = "/home/ballast"
#: USER for the process: Python's ``getpass.getuser()`` (used by torch's compile
#: caches) fails for a UID without a passwd entry unless USER is set.
USER_NAME = "ballast"

#: Environment variables as ordered (name, value) pairs.
Env = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Scratch:
    """A pod-local emptyDir the engine writes to, mounted into its containers."""

    name: str
    mount_path: str
    #: ``Memory`` for a tmpfs (e.g. /dev/shm); None for node disk.
    medium: str | None = None


HOME = Scratch("home", HOME_DIR)
TMP = Scratch("tmp", "/tmp")
#: Shared memory for NCCL and PyTorch worker processes (the container default is 64Mi).
#: Unsized: a memory-backed emptyDir counts against the container's memory limit.
SHM = Scratch("shm", "/dev/shm", medium="Memory")

BASE_ENV: Env = (("HOME", HOME_DIR), ("USER", USER_NAME))


@dataclass(frozen=True)
class InitStep:
    """A step that must finish before the engine starts (same image, volumes, security)."""

    name: str
    command: tuple[str, ...]
    env: Env = ()


@dataclass(frozen=True)
class Launch:
    """How one backend's engine container starts."""

    #: Arguments after the image's ENTRYPOINT: the engine's own, then the user's.
    args: tuple[str, ...]
    #: Engine environment; the user's ``env`` overrides an entry of the same name.
    env: Env = ()
    init: InitStep | None = None


#: ``launch(model, served_model_name, user_args, cache_dir) -> Launch``; ``cache_dir`` is the
#: directory the model cache is mounted at (read-only, filled by the loader) or None.
Launcher = Callable[[str, str, tuple[str, ...], str | None], Launch]

#: Environment of a serving pod that reads a filled cache: never reach the hub.
OFFLINE_ENV: Env = (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"))


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
    #: UID/GID to run as; None keeps the image's user (root: see pod_security_exceptions).
    run_as_user: int | None = NON_ROOT_UID
    #: True when the engine writes only to its scratch volumes.
    read_only_root_filesystem: bool = False
    #: emptyDirs the engine needs, mounted at their paths.
    scratch: tuple[Scratch, ...] = field(default=())
    #: Kubernetes "restricted" Pod Security rules the engine cannot meet, each
    #: justified in the engine module's docstring (rule names of tests/podsecurity.py).
    pod_security_exceptions: tuple[str, ...] = ()

"""A process kubelet: the fake kubelet, except that pods of the llamacpp engine run for real.

For a pod whose container runs llama.cpp's server image, it starts the container's own
command line, from the pod spec the operator rendered, as a local `llama-server` process
(built by `hack/llama/build.sh`) on the pod's own address on `lo` (from 10.245.0.0/16, as
the fake kubelet's served pods). It reports the pod Running at once and Ready only when
the container's real probes pass: the startup probe first, then the readiness probe, on
their own periods, thresholds and timeouts; a failed liveness probe, a startup probe out of
attempts or an exited process restarts the container after a back-off, as a kubelet does.
Deleting the pod sends SIGTERM, waits up to `terminationGracePeriodSeconds`, then SIGKILL;
the address goes when the pod is gone. Every other pod is the fake kubelet's.

What it translates (the one place this is listed; see also tests/cluster/README.md):

| pod spec | here |
| --- | --- |
| image entrypoint `/app/llama-server` (no `command`) | the built `llama-server` binary |
| `args`, `env` (`value` only), `$(VAR)` references | passed as they are, after the path mapping below |
| `--host 0.0.0.0` (every interface of the pod) | `--host <pod IP>` (the pod's only interface) |
| container port, probe `port` (number or name) | the same port on the pod's own address |
| `emptyDir` volume mounted at P | a fresh directory per pod under the kubelet's workdir |
| `persistentVolumeClaim` volume | `claims[claimName]` (a local directory), else an error event in the log |
| `hostPath` volume | `host_paths[path]` when given, else the same path |
| an absolute path under none of the mounts (the image's own files) | `image_dirs[prefix]` (the realmodel stack maps `/app`, the image's llama.cpp directory; its model comes through a `hostPath` volume the LLMService declares) |
| `workingDir` | mapped like any path (default: the pod's scratch directory) |
| `securityContext` (runAsUser, read-only root, dropped capabilities) | not enforced: the process runs as the test's user |
| `resources` | not enforced (no cgroups) |
| `env` from `valueFrom` (Secrets, fields) | not supported: the process runs without the variable |
| container state, `restartCount` | not reported: while the process is down (back-off) the pod stays Running and not Ready |

A pod spec it cannot translate (a `command`, a probe other than httpGet, a claim with no
local directory) is a `TranslationError`, kept in `errors` (so `stop()` raises it) and
raised again on every pass: the pod is never reported Ready.

Ballast's own pods (the chart's operator and gateway, image `ghcr.io/ballast-dev/ballast`)
run too when the kubelet is given `credentials` (a ServiceAccount's kubeconfig, see
`ProcessKubelet`): the container's args after `python -m ballast.cli`, with

| pod spec | here |
| --- | --- |
| the image's entrypoint `ballast` | this interpreter's `python -m ballast.cli` |
| `0.0.0.0` in an argument (`--liveness=http://0.0.0.0:8081/healthz`), the gateway's default `--host` | the pod's address |
| the operator's metrics address (default 0.0.0.0) | `BALLAST_METRICS_ADDRESS=<pod IP>` |
| `env` `valueFrom.fieldRef` `metadata.name` / `metadata.namespace` | the pod's name / namespace |
| the ServiceAccount token mounted in the pod | `KUBECONFIG`: a kubeconfig with a TokenRequest token of the pod's `serviceAccountName` |
| cluster DNS for the operator's probes of `<svc>.<ns>.svc` | `BALLAST_PROBE_URL_OVERRIDE` to the `ServiceProxy` (when given) |

Everything else about the pod (status, EndpointSlices, deletion) is the fake kubelet's.
`ServiceProxy` stands in for kube-proxy for the operator's health probes: the operator
probes self-hosted backends through their Service, and no ClusterIP is reachable here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .fakeengine import add_address, remove_address
from .fakekubelet import FakeKubelet
from .kubeapi import JSON, ApiError, KubeApi
from .procs import _die_with_parent

#: Images whose entrypoint is llama.cpp's server (any tag of the official server image).
LLAMACPP_IMAGE = re.compile(r"^ghcr\.io/ggml-org/llama\.cpp:server(-[\w.]+)?$")
ENTRYPOINT = "/app/llama-server"
#: Kubelet's container restart back-off: 10 s, doubling, at most 5 min.
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class TranslationError(ValueError):
    """A pod spec this kubelet cannot run as a local process (the message says why)."""


class PathMap:
    """Container paths -> local paths: the pod's volume mounts, then the image's files."""

    def __init__(self, mounts: Mapping[str, Path], image_dirs: Mapping[str, Path]) -> None:
        # Longest prefix first, so /home/ballast/.cache wins over /home/ballast.
        both = {**{k: Path(v) for k, v in image_dirs.items()}, **mounts}
        self.prefixes = sorted(both.items(), key=lambda kv: len(kv[0]), reverse=True)

    def local(self, path: str) -> str | None:
        """The local path for an absolute container path, or None when nothing maps it."""
        for prefix, local in self.prefixes:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return str(local / path[len(prefix) :].lstrip("/"))
        return None

    def translate(self, value: str) -> str:
        if value.startswith("/"):
            return self.local(value) or value
        if "=" in value:  # --flag=/path
            flag, _, rest = value.partition("=")
            if rest.startswith("/") and (mapped := self.local(rest)):
                return f"{flag}={mapped}"
        return value


def is_llamacpp(pod: JSON) -> bool:
    containers = pod["spec"]["containers"]
    return bool(containers) and bool(LLAMACPP_IMAGE.match(containers[0].get("image", "")))


#: Ballast's own image (any tag): its entrypoint is the `ballast` command.
BALLAST_IMAGE = re.compile(r"^ghcr\.io/ballast-dev/ballast(:[\w.-]+)?$")


def is_ballast(pod: JSON) -> bool:
    containers = pod["spec"]["containers"]
    return bool(containers) and bool(BALLAST_IMAGE.match(containers[0].get("image", "")))


def ballast_command_line(
    pod: JSON, ip: str, paths: PathMap
) -> tuple[list[str], dict[str, str], str]:
    """argv, environment and working directory of a Ballast pod (operator or gateway) run here."""
    meta = pod["metadata"]
    container = pod["spec"]["containers"][0]
    fields = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"]}
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        ref = ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if "value" in var:
            env[var["name"]] = _expand(var["value"], env)
        elif ref in fields:
            env[var["name"]] = fields[ref]
    if container.get("command"):
        raise TranslationError("a `command` replaces the image entrypoint: not supported here")
    args = [_expand(a, env).replace("0.0.0.0", ip) for a in container.get("args") or []]
    if args[:1] == ["gateway"] and not any(a == "--host" or a.startswith("--host=") for a in args):
        args.append(f"--host={ip}")
    env["BALLAST_METRICS_ADDRESS"] = ip
    workdir = paths.translate(container.get("workingDir") or "/tmp")
    return [sys.executable, "-m", "ballast.cli", *args], env, workdir


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables replaced, others left as written."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value).replace("$$", "$")


def command_line(
    pod: JSON,
    ip: str,
    server: Path,
    paths: PathMap,
) -> tuple[list[str], dict[str, str], str]:
    """argv, environment and working directory of the pod's first container, run here."""
    container = pod["spec"]["containers"][0]
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = paths.translate(_expand(var.get("value", ""), env))
    if container.get("command"):
        raise TranslationError("a `command` replaces the image entrypoint: not supported here")
    args = [_expand(a, env) for a in container.get("args") or []]
    out = [str(server)]
    it = iter(args)
    for arg in it:
        if arg == "--host":
            host = next(it, "")
            out += ["--host", ip if host in ("0.0.0.0", "::", "") else host]
        elif arg.startswith("--host="):
            out.append(f"--host={ip}")
        else:
            out.append(paths.translate(arg))
    workdir = paths.translate(container.get("workingDir") or "/tmp")
    return out, env, workdir


def _probe_port(container: JSON, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise TranslationError(f"probe port {port!r} is not a named port of the container")


class Probe:
    """One httpGet probe of a container (kubelet semantics, without initialDelaySeconds jitter)."""

    def __init__(self, spec: JSON, container: JSON, ip: str) -> None:
        get = spec.get("httpGet")
        if get is None:
            raise TranslationError("only httpGet probes are supported")
        self.url = f"http://{ip}:{_probe_port(container, get['port'])}{get.get('path', '/')}"
        self.period = float(spec.get("periodSeconds", 10))
        self.timeout = float(spec.get("timeoutSeconds", 1))
        self.failure_threshold = int(spec.get("failureThreshold", 3))
        self.success_threshold = int(spec.get("successThreshold", 1))
        self.initial_delay = float(spec.get("initialDelaySeconds", 0))

    def check(self) -> bool:
        """One attempt: any 2xx/3xx within the timeout is a success."""
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as rsp:
                return 200 <= int(rsp.status) < 400
        except (urllib.error.URLError, OSError, ValueError):
            return False


class EngineProcess:
    """A pod's engine container as a local process on the pod's address, with its probes.

    Has the fake engine's interface for the fake kubelet: `start`, `kill`, `drain`,
    `remove`, `ip`.
    """

    def __init__(
        self,
        pod: JSON,
        ip: str,
        server: Path,
        workdir: Path,
        image_dirs: Mapping[str, Path],
        claims: Mapping[str, Path],
        host_paths: Mapping[str, Path],
    ) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        self.pod = meta["name"]
        self.namespace = meta["namespace"]
        self.ip = ip
        self.container = spec["containers"][0]
        self.name = self.container["name"]
        self.grace = float(spec.get("terminationGracePeriodSeconds", 30))
        self.dir = workdir / f"{self.namespace}_{self.pod}"
        self.log = self.dir / f"{self.name}.log"
        mounts: dict[str, Path] = {}
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for mount in self.container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise TranslationError(f"volumeMount {mount['name']!r} names no volume")
            mounts[mount["mountPath"]] = self._volume_dir(volume, claims, host_paths)
        self.paths = PathMap(mounts, image_dirs)
        self.argv, env, self.cwd = self.command_line(pod, ip, server)
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
        self.env = {**base, **env}
        probes = {k: self.container.get(f"{k}Probe") for k in ("startup", "readiness", "liveness")}
        self.startup = Probe(probes["startup"], self.container, ip) if probes["startup"] else None
        self.readiness = (
            Probe(probes["readiness"], self.container, ip) if probes["readiness"] else None
        )
        self.liveness = (
            Probe(probes["liveness"], self.container, ip) if probes["liveness"] else None
        )
        #: what the kubelet reports: the container passed its startup and readiness probes
        self.ready = False
        self.started = False
        self.backing_off = False
        self.restarts = 0
        self.exits: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: first restart back-off in seconds (doubles per restart, at most BACKOFF_MAX)
        self.backoff = BACKOFF_START

    def command_line(
        self, pod: JSON, ip: str, server: Path
    ) -> tuple[list[str], dict[str, str], str]:
        return command_line(pod, ip, server, self.paths)

    def _volume_dir(
        self, volume: JSON, claims: Mapping[str, Path], host_paths: Mapping[str, Path]
    ) -> Path:
        if "emptyDir" in volume:
            path = self.dir / "volumes" / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            return path
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in claims:
                raise TranslationError(f"no local directory for PersistentVolumeClaim {claim!r}")
            return Path(claims[claim])
        if "hostPath" in volume:
            host = volume["hostPath"]["path"]
            return Path(host_paths.get(host, host))
        if "configMap" in volume or "secret" in volume or "projected" in volume:
            path = self.dir / "volumes" / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            return path
        raise TranslationError(f"volume {volume['name']!r}: unsupported type")

    # -- the fake engine's interface -------------------------------------------------
    def start(self) -> EngineProcess:
        """Add the pod's address and start the container and its prober."""
        add_address(self.ip)
        self.dir.mkdir(parents=True, exist_ok=True)
        Path(self.cwd).mkdir(parents=True, exist_ok=True)
        self._launch()
        self._thread = threading.Thread(
            target=self._probe_loop, name=f"prober-{self.pod}", daemon=True
        )
        self._thread.start()
        return self

    def kill(self) -> None:
        """SIGKILL the container and stop probing (the pod is going)."""
        self._stop.set()
        self._signal(signal.SIGKILL)
        self._reap(10)
        self.ready = False

    def drain(self) -> None:
        """SIGTERM, then SIGKILL after the pod's termination grace period."""
        self._stop.set()
        self.ready = False
        self._signal(signal.SIGTERM)
        if not self._reap(self.grace):
            self._signal(signal.SIGKILL)
            self._reap(10)

    def remove(self) -> None:
        """Stop everything and take the address off `lo`."""
        self.kill()
        if self._thread is not None:
            self._thread.join(timeout=15)
        remove_address(self.ip)
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)

    # -- for tests and the demo ------------------------------------------------------
    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def crash(self) -> None:
        """SIGKILL the process as a crash would: the kubelet notices and restarts it."""
        self._signal(signal.SIGKILL)

    def restart_now(self) -> None:
        """End a restart back-off early (tests and the demo, instead of waiting it out)."""
        self._wake.set()

    def alive(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    # -- internals -------------------------------------------------------------------
    def _launch(self) -> None:
        with self._lock, self.log.open("ab") as out:
            out.write(f"--- start {self.restarts + 1}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.started = False
        self.ready = False

    def _signal(self, sig: int) -> None:
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    def _reap(self, timeout: float) -> bool:
        with self._lock:
            proc = self._proc
        if proc is None:
            return True
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _restart(self, why: str) -> None:
        """Kill, wait the back-off (kubelet's CrashLoopBackOff), start again."""
        self.ready = self.started = False
        self._signal(signal.SIGKILL)
        self._reap(10)
        with self._lock:
            code = self._proc.returncode if self._proc is not None else None
        self.exits.append(code if code is not None else -9)
        backoff = min(self.backoff * 2 ** min(self.restarts, 5), BACKOFF_MAX)
        with self.log.open("ab") as out:
            out.write(f"--- {why}; restart in {backoff:.0f}s\n".encode())
        self.backing_off = True
        end = time.monotonic() + backoff
        while not self._wake.is_set() and time.monotonic() < end:
            if self._stop.wait(0.1):
                return
        self._wake.clear()
        self.backing_off = False
        self.restarts += 1
        self._launch()

    def _probe_loop(self) -> None:
        """Startup probe until it passes, then readiness and liveness, each on its period."""
        failures = {"startup": 0, "readiness": 0, "liveness": 0}
        successes = 0
        launched = time.monotonic()
        next_at = {"startup": 0.0, "readiness": 0.0, "liveness": 0.0}
        while not self._stop.wait(0.2):
            if not self.alive():
                self._restart("container exited")
                launched = time.monotonic()
                failures = dict.fromkeys(failures, 0)
                continue
            now = time.monotonic()
            if not self.started:
                probe = self.startup
                if probe is None:
                    self.started = True
                    continue
                if now < next_at["startup"] or now - launched < probe.initial_delay:
                    continue
                next_at["startup"] = now + probe.period
                if probe.check():
                    self.started = True
                    next_at["readiness"] = next_at["liveness"] = now
                    continue
                failures["startup"] += 1
                if failures["startup"] >= probe.failure_threshold:
                    self._restart("startup probe failed")
                    launched = time.monotonic()
                    failures = dict.fromkeys(failures, 0)
                continue
            if self.readiness is None:
                self.ready = True
            elif now >= next_at["readiness"]:
                next_at["readiness"] = now + self.readiness.period
                if self.readiness.check():
                    failures["readiness"] = 0
                    successes += 1
                    if successes >= self.readiness.success_threshold:
                        self.ready = True
                else:
                    successes = 0
                    failures["readiness"] += 1
                    if failures["readiness"] >= self.readiness.failure_threshold:
                        self.ready = False
            if self.liveness is not None and now >= next_at["liveness"]:
                next_at["liveness"] = now + self.liveness.period
                if self.liveness.check():
                    failures["liveness"] = 0
                else:
                    failures["liveness"] += 1
                    if failures["liveness"] >= self.liveness.failure_threshold:
                        self._restart("liveness probe failed")
                        launched = time.monotonic()
                        failures = dict.fromkeys(failures, 0)


class BallastProcess(EngineProcess):
    """A Ballast pod (the chart's operator or gateway) as a local `ballast` process."""

    def __init__(self, pod: JSON, ip: str, workdir: Path, env: Mapping[str, str]) -> None:
        self.extra_env = dict(env)
        super().__init__(pod, ip, Path(sys.executable), workdir, {}, {}, {})

    def command_line(
        self, pod: JSON, ip: str, server: Path
    ) -> tuple[list[str], dict[str, str], str]:
        argv, env, cwd = ballast_command_line(pod, ip, self.paths)
        return argv, {**env, **self.extra_env}, cwd


class ProcessKubelet(FakeKubelet):
    """The fake kubelet, running llamacpp pods as real `llama-server` processes."""

    def __init__(
        self,
        api: KubeApi,
        node_name: str = "fake-node",
        *,
        server: Path,
        workdir: Path,
        image_dirs: Mapping[str, Path] | None = None,
        claims: Mapping[str, Path] | None = None,
        host_paths: Mapping[str, Path] | None = None,
        credentials: Callable[[str, str], Path] | None = None,
        probe_override: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(api, node_name, **kwargs)
        #: (namespace, ServiceAccount) -> a kubeconfig with its token: runs Ballast's own pods
        self.credentials = credentials
        self.probe_override = probe_override
        self.server = Path(server)
        self.workdir = Path(workdir)
        self.image_dirs = dict(image_dirs or {})
        self.claims = dict(claims or {})
        self.host_paths = dict(host_paths or {})

    def _runs_ballast(self, pod: JSON) -> bool:
        return self.credentials is not None and is_ballast(pod)

    def _is_served(self, pod: JSON) -> bool:
        return is_llamacpp(pod) or self._runs_ballast(pod) or super()._is_served(pod)

    def _new_engine(self, pod: JSON, ip: str) -> Any:
        if not is_llamacpp(pod) and not self._runs_ballast(pod):
            return super()._new_engine(pod, ip)
        try:
            if self._runs_ballast(pod):
                return self._ballast(pod, ip)
            return EngineProcess(
                pod, ip, self.server, self.workdir, self.image_dirs, self.claims, self.host_paths
            )
        except TranslationError as err:
            name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            failure = TranslationError(f"pod {name}: {err}")
            if not any(str(e) == str(failure) for e in self.errors):
                self.errors.append(failure)
            raise failure from None

    def _ballast(self, pod: JSON, ip: str) -> BallastProcess:
        assert self.credentials is not None
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        env = {"KUBECONFIG": str(self.credentials(meta["namespace"], account))}
        if self.probe_override is not None:
            env["BALLAST_PROBE_URL_OVERRIDE"] = json.dumps({"*": self.probe_override})
        return BallastProcess(pod, ip, self.workdir, env)

    def _unready(self, pod: JSON) -> set[str] | None:
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        engine = self.engines.get(key)
        if not isinstance(engine, EngineProcess):
            return None
        return set() if engine.ready else {engine.name}

    def processes(self, namespace: str | None = None) -> dict[str, EngineProcess]:
        """ "namespace/pod" -> its engine process (only llamacpp pods)."""
        return {
            k: e
            for k, e in list(self.engines.items())
            if isinstance(e, EngineProcess) and (namespace is None or e.namespace == namespace)
        }


class ServiceProxy:
    """kube-proxy for the operator's probes: GET /<namespace>/<service>/<backend>/<path> is
    sent to a ready endpoint of Service `<service>-<backend>` (from its EndpointSlices), as
    a ClusterIP would; with no ready endpoint it answers 503. Use it with
    `BALLAST_PROBE_URL_OVERRIDE={"*": proxy.override}`."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = proxy.forward(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def override(self) -> str:
        return self.base + "/{namespace}/{service}/{backend}"

    def __enter__(self) -> ServiceProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def endpoint(self, namespace: str, service: str) -> str | None:
        path = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        slices = self.api.get(path, labelSelector=f"kubernetes.io/service-name={service}")
        for sl in slices["items"]:
            ports = sl.get("ports") or []
            if not ports:
                continue
            for e in sl.get("endpoints") or []:
                if (e.get("conditions") or {}).get("ready"):
                    return f"http://{e['addresses'][0]}:{ports[0]['port']}"
        return None

    def forward(self, path: str) -> tuple[int, bytes]:
        parts = path.lstrip("/").split("/", 3)
        if len(parts) < 3:
            return 404, b'{"error": "want /<namespace>/<service>/<backend>/<path>"}'
        namespace, service, backend = parts[:3]
        rest = "/" + (parts[3] if len(parts) > 3 else "")
        try:
            base = self.endpoint(namespace, f"{service}-{backend}")
        except ApiError:
            return 503, b'{"error": "EndpointSlices not readable"}'
        if base is None:
            return 503, b'{"error": "no ready endpoint"}'
        try:
            with urllib.request.urlopen(base + rest, timeout=5) as rsp:
                return int(rsp.status), rsp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except (urllib.error.URLError, OSError):
            return 503, b'{"error": "connection refused"}'

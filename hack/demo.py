"""`make demo`: Ballast end to end on this machine, with a real model answering through it.

1. Builds what it needs, once (each cached, keyed by version; later runs reuse them): the
   control plane (hack/cluster/build.sh), llama.cpp's llama-server (hack/llama/build.sh),
   the Gemma 3 270M model (hack/llama/model.sh) and kubectl (hack/k8s-tools.sh).
2. Starts a local control plane (etcd, kube-apiserver, kube-controller-manager) with the
   process kubelet, which runs llamacpp pods as real llama-server processes, then the
   operator (`ballast run`) and the gateway (`ballast gateway`).
3. `kubectl apply`s an LLMService with two llama.cpp tiers and shows `kubectl get llms`
   until it is Ready.
4. Sends a chat completion and a streamed one through the gateway with the `openai` SDK.
5. Kills the primary tier's engine and shows the next answer coming from the fallback
   (status and the gateway's x-ballast-backend header), and `kubectl get llms` Degraded;
   then lets the kubelet restart it and shows the primary back.
6. Deletes the LLMService and stops everything.

With a reachable kube context (KUBECONFIG or ~/.kube/config whose API server answers:
kind, minikube, a real cluster) it runs there instead (`cluster_demo`): it installs the chart
(`helm upgrade --install ballast charts/ballast -n ballast-system`) unless Ballast's CRD is
already there, creates namespace `demo`, applies the same two llama.cpp tiers with the model
downloaded by the engine from Hugging Face (`BALLAST_DEMO_MODEL`, default
`unsloth/gemma-3-270m-it-GGUF:Q4_K_M`; `hostpath` serves the file
/var/lib/ballast/models/gemma-3-270m-q4_k_m.gguf from the node instead), reaches the gateway
at a pod's address when it answers from here and through `kubectl port-forward` otherwise,
deletes the primary's pod to show the failover, and removes everything it created (the
release only if it installed it). BALLAST_DEMO_LOCAL=1 runs locally even then. Set
BALLAST_DEMO_KEEP=1 to keep the stack running at the end until Ctrl-C.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import openai  # noqa: E402
import yaml  # noqa: E402

from tests.cluster.poll import wait_for  # noqa: E402
from tests.cluster.procs import free_port  # noqa: E402
from tests.realmodel.stack import RealStack, llmservice  # noqa: E402

NAMESPACE = "demo"
NAME = "gemma"
MODEL = "gemma-3-270m"
START = time.monotonic()
#: Few-shot turns: Gemma 3 270M is a base model; examples steer it to short answers.
FEW_SHOT: list[dict[str, str]] = [
    {"role": "system", "content": "Answer in one short sentence."},
    {"role": "user", "content": "What is the capital of Italy?"},
    {"role": "assistant", "content": "Rome is the capital of Italy."},
    {"role": "user", "content": "What is the capital of Spain?"},
    {"role": "assistant", "content": "Madrid is the capital of Spain."},
]
#: The chat template is chatml, which this model's tokenizer spells as plain text, so the
#: model's "<|im_end|>" is not an end-of-generation token. Stop on "<" rather than
#: "<|im_end|>": streaming, llama-server (this build) sends a token that merely starts a stop
#: string (".<") before it knows, so "<|im_end" would leak into the streamed text.
STOP = ["\n", "<"]


def say(message: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {message}", flush=True)


def indent(text: str) -> str:
    return "\n".join("           " + line for line in text.rstrip().splitlines())


def cached_build(what: str, argv: list[str], marker: Path | None = None) -> Path:
    """Run a cached build script; say whether it built (and how long it took) or reused."""
    began = time.monotonic()
    say(f"{what}: {'checking the cache' if marker is None else marker}")
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stderr is not None
    assert proc.stdout is not None
    built = False
    lines: list[str] = []
    for line in proc.stderr:  # the scripts report on stderr; a cache hit prints nothing
        built = True
        lines.append(line.rstrip())
        if ".sh: " in line:  # their own progress lines, not the compiler's
            say(f"  {line.rstrip()}")
    out = proc.stdout.read()
    if proc.wait() != 0:
        print("\n".join(lines[-40:]), file=sys.stderr)
        raise SystemExit(f"{' '.join(argv)} failed")
    took = time.monotonic() - began
    path = Path(out.strip().splitlines()[-1])
    say(
        f"{what}: {'built in ' + format(took, '.0f') + 's' if built else 'cached, reused'} ({path})"
    )
    return path


def kube_context_configured() -> bool:
    config = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return any(Path(p).is_file() for p in config.split(os.pathsep) if p)


def kube_context_reachable(kubectl_bin: Path) -> str | None:
    """The current context's API server version when it answers within a few seconds."""
    if not kube_context_configured():
        return None
    out = subprocess.run(
        [str(kubectl_bin), "version", "-o", "json", "--request-timeout=5s"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        return None
    try:
        server = json.loads(out.stdout).get("serverVersion") or {}
    except ValueError:
        return None
    return str(server.get("gitVersion") or "") or None


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    say("Ballast demo: an operator keeps a real model served; a gateway fails over per request")
    tools = cached_build("kubectl and helm", [str(REPO / "hack/k8s-tools.sh")])
    version = (
        None
        if os.environ.get("BALLAST_DEMO_LOCAL") == "1"
        else kube_context_reachable(tools / "kubectl")
    )
    if version is not None:
        say(f"the current kube context answers (Kubernetes {version}): running the demo there")
        return cluster_demo(tools)
    if kube_context_configured():
        say("a kube context is configured but does not answer: running on a local control plane")
    cached_build("control plane (Kubernetes binaries)", [str(REPO / "hack/cluster/build.sh")])
    server = cached_build("llama-server (llama.cpp, CPU)", [str(REPO / "hack/llama/build.sh")])
    models = cached_build("model (Gemma 3 270M Q4_K_M GGUF)", [str(REPO / "hack/llama/model.sh")])
    workdir = Path(tempfile.mkdtemp(prefix="ballast-demo-"))
    stack = RealStack(NAMESPACE, workdir=workdir, server=server, models=models, log=say)
    try:
        stack.start()
        run_demo(stack, tools / "kubectl", workdir)
        if os.environ.get("BALLAST_DEMO_KEEP") == "1":
            say(f"BALLAST_DEMO_KEEP=1: export KUBECONFIG={stack.plane.kubeconfig}; "
                f"OPENAI_BASE_URL={stack.base_url}; Ctrl-C stops it")  # fmt: skip
            signal.pause()
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        say("cleaning up: operator, gateway, engines, control plane, addresses on lo")
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    say("done")
    return 0


def tool(binary: Path, kubeconfig: Path | None = None) -> Any:
    """A function running ``binary`` (kubectl, helm) with ``kubeconfig``; its stdout."""

    def run(*args: str, check: bool = True) -> str:
        env = {**os.environ, **({"KUBECONFIG": str(kubeconfig)} if kubeconfig else {})}
        out = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env)
        if check and out.returncode != 0:
            raise SystemExit(f"{binary.name} {' '.join(args)} failed:\n{out.stderr}")
        return out.stdout if out.returncode == 0 else ""

    return run


def apply_and_wait(kubectl: Any, manifest: Path, wait_ready: Any) -> Any:
    """Apply the LLMService, show `kubectl get llms` as it changes until Ready; the shower."""
    say(f"kubectl apply -f {manifest.name}: an LLMService with two llama.cpp tiers")
    print(indent(manifest.read_text()))
    print(indent(kubectl("apply", "-f", str(manifest))))
    shown = [""]

    def get_llms() -> None:
        text = kubectl("get", "llms", "-n", NAMESPACE)
        if text != shown[0]:
            shown[0] = text
            say("kubectl get llms -n demo")
            print(indent(text))

    wait_ready(get_llms)
    get_llms()
    say("Ready: both tiers' llama-server pods passed their readiness probes")
    print(indent(kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide")))
    return get_llms


def ask(client: openai.OpenAI, question: str) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[*FEW_SHOT, {"role": "user", "content": question}],
        max_tokens=32,
        temperature=0,
        seed=42,
        stop=STOP,
    )


def show(raw: Any, what: str) -> None:
    say(f"{what}: {raw.parse().choices[0].message.content!r}")
    say(f"  HTTP {raw.status_code}, x-ballast-backend: {raw.headers.get('x-ballast-backend')}, "
        f"x-ballast-attempts: {raw.headers.get('x-ballast-attempts')}")  # fmt: skip


def stream(client: openai.OpenAI, question: str) -> None:
    say(f"streamed chat completion: {question!r}")
    print("           ", end="", flush=True)
    chunks = 0
    for chunk in client.chat.completions.create(
        model=MODEL,
        messages=[*FEW_SHOT, {"role": "user", "content": question}],
        max_tokens=32,
        temperature=0,
        seed=42,
        stop=STOP,
        stream=True,
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            chunks += 1
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()
    say(f"  {chunks} chunks, streamed as the engine produced them")


def run_demo(stack: RealStack, kubectl_bin: Path, workdir: Path) -> None:
    kubectl = tool(kubectl_bin, stack.plane.kubeconfig)
    manifest = workdir / "gemma.yaml"
    manifest.write_text(yaml.safe_dump(llmservice(NAME, NAMESPACE, period=2), sort_keys=False))
    get_llms = apply_and_wait(
        kubectl, manifest, lambda every: stack.wait_ready(NAME, timeout=600, every=every)
    )
    client = openai.OpenAI(base_url=stack.base_url, api_key=stack.api_key, max_retries=0)
    say(f"chat completion through the gateway ({stack.base_url})")
    show(ask(client, "What is the capital of France?"), "  'What is the capital of France?'")
    stream(client, "What is the capital of Japan?")

    primary = stack.engines()["primary"]
    primary.backoff = 600.0  # the demo restarts it itself below
    say(f"killing the primary tier's engine (llama-server pid {primary.pid} on {primary.ip})")
    primary.crash()
    show(ask(client, "What is the capital of Germany?"), "next request, answered by the fallback")
    say("waiting for the operator to take the primary out of the route")
    wait_for(lambda: stack.in_route(NAME).get("primary") is False, timeout=120, what="primary out")
    get_llms()
    say("the kubelet restarts the primary's container (back-off cut short for the demo)")
    primary.backoff = 1.0
    primary.restart_now()
    stack.wait_ready(NAME, timeout=300, every=get_llms)
    get_llms()
    show(ask(client, "What is the capital of France?"), "primary back")
    say(f"kubectl delete -f {manifest.name}")
    print(indent(kubectl("delete", "-f", str(manifest), "--wait=true")))


# -- a reachable kube context ------------------------------------------------------------

#: The model the cluster's engines download from Hugging Face (llama.cpp `--hf-repo`).
CLUSTER_MODEL = "unsloth/gemma-3-270m-it-GGUF:Q4_K_M"
RELEASE, RELEASE_NAMESPACE = "ballast", "ballast-system"


def cluster_llmservice(model: str) -> dict[str, Any]:
    """The demo's LLMService for a cluster: the model from the hub, or the node's file."""
    obj = llmservice(NAME, NAMESPACE, period=2)
    if model == "hostpath":
        return obj
    for b in obj["spec"]["backends"]:
        b["model"] = model
        b.pop("volumes")
        b.pop("volumeMounts")
        b["args"] = [a for a in b["args"] if a not in ("--chat-template", "chatml")]
    return obj


def gateway_address(kubectl: Any) -> tuple[str, str, str, int]:
    """(namespace, Service, a ready pod's address, its port) of Ballast's gateway."""
    found = json.loads(kubectl("get", "services", "-A", "-o", "json",
                               "-l", "app.kubernetes.io/name=ballast,app.kubernetes.io/component=gateway"))  # fmt: skip
    services = [s for s in found["items"] if s["spec"].get("clusterIP") != "None"]
    if not services:
        raise SystemExit("Ballast's CRD is installed but no gateway Service was found")
    svc = services[0]
    ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    slices = json.loads(kubectl("get", "endpointslices", "-n", ns, "-o", "json",
                                "-l", f"kubernetes.io/service-name={name}"))  # fmt: skip
    for sl in slices["items"]:
        port = next((p["port"] for p in sl.get("ports") or [] if p.get("name") == "http"), None)
        for ep in sl.get("endpoints") or []:
            if port and (ep.get("conditions") or {}).get("ready") and ep.get("addresses"):
                return ns, name, ep["addresses"][0], int(port)
    raise SystemExit(f"the gateway Service {ns}/{name} has no ready pod")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def cluster_demo(tools: Path) -> int:
    """The demo in the cluster of the current kube context (see the module docstring)."""
    kubectl, helm = tool(tools / "kubectl"), tool(tools / "helm")
    workdir = Path(tempfile.mkdtemp(prefix="ballast-demo-"))
    installed = created_ns = False
    forward: subprocess.Popen[bytes] | None = None
    manifest = workdir / "gemma.yaml"
    try:
        if kubectl("get", "crd", "llmservices.ballast.dev", check=False):
            say("Ballast is installed in this cluster (its CRD is there): using it")
        else:
            say(f"helm upgrade --install {RELEASE} charts/ballast -n {RELEASE_NAMESPACE} --wait")
            began = time.monotonic()
            helm("upgrade", "--install", RELEASE, str(REPO / "charts" / "ballast"),
                 "-n", RELEASE_NAMESPACE, "--create-namespace", "--wait", "--timeout", "10m")  # fmt: skip
            installed = True
            say(f"installed the chart in {time.monotonic() - began:.0f}s")
            print(indent(kubectl("get", "pods", "-n", RELEASE_NAMESPACE, "-o", "wide")))
        if not kubectl("get", "namespace", NAMESPACE, check=False):
            kubectl("create", "namespace", NAMESPACE)
            created_ns = True
        model = os.environ.get("BALLAST_DEMO_MODEL") or CLUSTER_MODEL
        manifest.write_text(yaml.safe_dump(cluster_llmservice(model), sort_keys=False))

        def ready(every: Any) -> None:
            def phase() -> bool:
                every()
                got = kubectl("get", "llms", NAME, "-n", NAMESPACE, "-o",
                              "jsonpath={.status.phase}", check=False)  # fmt: skip
                return got == "Ready"

            wait_for(phase, timeout=1800, interval=2, what=f"LLMService {NAME} Ready")

        get_llms = apply_and_wait(kubectl, manifest, ready)
        ns, name, ip, port = gateway_address(kubectl)
        if reachable(ip, port):
            base = f"http://{ip}:{port}/v1"
            say(f"the gateway's pod {ip} answers from here: {base}")
        else:
            local = free_port()
            forward = subprocess.Popen(
                [str(tools / "kubectl"), "port-forward", "-n", ns, f"svc/{name}", f"{local}:http"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_for(lambda: reachable("127.0.0.1", local), timeout=30, what="port-forward")
            base = f"http://127.0.0.1:{local}/v1"
            say(f"kubectl port-forward -n {ns} svc/{name} {local}:http: {base}")
        secrets_ = json.loads(kubectl("get", "secrets", "-n", ns, "-o", "json",
                                      "-l", "ballast.dev/gateway-key=true"))  # fmt: skip
        if not secrets_["items"]:
            raise SystemExit(f"no client key Secret (ballast.dev/gateway-key) in {ns}")
        key = base64.b64decode(secrets_["items"][0]["data"]["key"]).decode()
        client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)
        show(ask(client, "What is the capital of France?"), "  'What is the capital of France?'")
        stream(client, "What is the capital of Japan?")
        say("deleting the primary tier's pod: the gateway retries on the fallback meanwhile")
        kubectl("delete", "pod", "-n", NAMESPACE, "--wait=false",
                "-l", f"ballast.dev/service={NAME},ballast.dev/backend=primary")  # fmt: skip
        show(ask(client, "What is the capital of Germany?"), "next request")
        say("waiting for the primary's new pod (the engine loads the model again)")
        ready(get_llms)
        get_llms()
        show(ask(client, "What is the capital of France?"), "primary back")
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        say("cleaning up what the demo created")
        if forward is not None:
            forward.terminate()
            forward.wait(10)
        if manifest.exists():
            print(
                indent(kubectl("delete", "-f", str(manifest), "--wait=true", "--ignore-not-found"))
            )
        if created_ns:
            kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        if installed:
            say(f"helm uninstall {RELEASE} -n {RELEASE_NAMESPACE}, and the CRD it keeps")
            helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", check=False)
            # the chart keeps its CRD on uninstall (crds.keep); the demo brought it, so it goes
            kubectl("delete", "crd", "llmservices.ballast.dev", "--ignore-not-found", check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

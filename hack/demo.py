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

With a reachable kube context (KUBECONFIG or ~/.kube/config) it does not touch that
cluster: it says so and runs locally, because llama-server pods there would need the
model downloaded by the engine (`--hf-repo`), see docs/quickstart.md. Set
BALLAST_DEMO_KEEP=1 to keep the stack running at the end until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
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


def kube_context_reachable() -> bool:
    config = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return any(Path(p).is_file() for p in config.split(os.pathsep) if p)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    say("Ballast demo: an operator keeps a real model served; a gateway fails over per request")
    if kube_context_reachable():
        say(
            "a kube context is configured; this demo runs its own local control plane and "
            "leaves that cluster alone (see docs/quickstart.md to install Ballast there)"
        )
    cached_build("control plane (Kubernetes binaries)", [str(REPO / "hack/cluster/build.sh")])
    server = cached_build("llama-server (llama.cpp, CPU)", [str(REPO / "hack/llama/build.sh")])
    models = cached_build("model (Gemma 3 270M Q4_K_M GGUF)", [str(REPO / "hack/llama/model.sh")])
    tools = cached_build("kubectl", [str(REPO / "hack/k8s-tools.sh")])
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


def run_demo(stack: RealStack, kubectl_bin: Path, workdir: Path) -> None:
    def kubectl(*args: str) -> str:
        env = {**os.environ, "KUBECONFIG": str(stack.plane.kubeconfig)}
        out = subprocess.run([str(kubectl_bin), *args], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed:\n{out.stderr}")
        return out.stdout

    manifest = workdir / "gemma.yaml"
    manifest.write_text(yaml.safe_dump(llmservice(NAME, NAMESPACE, period=2), sort_keys=False))
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

    stack.wait_ready(NAME, timeout=600, every=get_llms)
    get_llms()
    say("Ready: both tiers' llama-server processes passed their readiness probes")
    pods = kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide")
    print(indent(pods))

    client = openai.OpenAI(base_url=stack.base_url, api_key=stack.api_key, max_retries=0)
    question = "What is the capital of France?"
    messages: list[Any] = [*FEW_SHOT, {"role": "user", "content": question}]
    say(f"chat completion through the gateway ({stack.base_url}): {question!r}")
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=32, temperature=0, seed=42, stop=STOP
    )
    answer = raw.parse()
    say(f"  answer: {answer.choices[0].message.content!r}")
    say(f"  HTTP {raw.status_code}, x-ballast-backend: {raw.headers.get('x-ballast-backend')}, "
        f"usage: {answer.usage.prompt_tokens if answer.usage else '?'} prompt + "
        f"{answer.usage.completion_tokens if answer.usage else '?'} completion tokens")  # fmt: skip

    question = "What is the capital of Japan?"
    say(f"streamed chat completion: {question!r}")
    print("           ", end="", flush=True)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[*FEW_SHOT, {"role": "user", "content": question}],
        max_tokens=32,
        temperature=0,
        seed=42,
        stop=STOP,
        stream=True,
    )
    chunks = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            chunks += 1
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()
    say(f"  {chunks} chunks, streamed as the engine produced them")

    primary = stack.engines()["primary"]
    primary.backoff = 600.0  # the demo restarts it itself below
    say(f"killing the primary tier's engine (llama-server pid {primary.pid} on {primary.ip})")
    primary.crash()
    question = "What is the capital of Germany?"
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[*FEW_SHOT, {"role": "user", "content": question}],
        max_tokens=32,
        temperature=0,
        seed=42,
        stop=STOP,
    )
    say(f"next request {question!r}:")
    say(f"  answer: {raw.parse().choices[0].message.content!r}")
    say(f"  HTTP {raw.status_code}, x-ballast-backend: {raw.headers.get('x-ballast-backend')}, "
        f"x-ballast-attempts: {raw.headers.get('x-ballast-attempts')}")  # fmt: skip
    say("waiting for the operator to take the primary out of the route")
    wait_for(lambda: stack.in_route(NAME).get("primary") is False, timeout=120, what="primary out")
    get_llms()
    say("the kubelet restarts the primary's container (back-off cut short for the demo)")
    primary.backoff = 1.0
    primary.restart_now()
    stack.wait_ready(NAME, timeout=300, every=get_llms)
    get_llms()
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=32, temperature=0, seed=42, stop=STOP
    )
    say(f"primary back: HTTP {raw.status_code}, x-ballast-backend: "
        f"{raw.headers.get('x-ballast-backend')}, answer {raw.parse().choices[0].message.content!r}")  # fmt: skip
    say(f"kubectl delete -f {manifest.name}")
    print(indent(kubectl("delete", "-f", str(manifest), "--wait=true")))


if __name__ == "__main__":
    sys.exit(main())

"""Choosing one pod of a backend per request: least loaded, or by key on a bounded-load ring.

A plain unit, tested without aiohttp or Kubernetes. A :class:`Pod` is one ready endpoint of
a backend's Service with what this gateway knows of it: requests in flight, consecutive
failures, and passive ejection (a pod that refuses connections, or answers 5xx three times
in a row, is skipped for 1 s, doubling per ejection up to 30 s, and forgiven by its next
success). Ejection is per pod and separate from the backend's circuit breaker.

:func:`least_loaded` takes the pod with the fewest requests in flight from this gateway,
ties broken at random. Every candidate is compared, not two sampled ones (the power of two
choices): the counts are this process's own and exact, so there is no stale view to herd
on, and a slow pod, whose requests pile up, loses to every faster one instead of to the one
it happens to be paired with. :class:`Ring` is consistent hashing with bounded loads
(Mirrokni, Thorup, Zadimoghaddam 2018): the ring depends only on the pods' addresses, so
every gateway replica maps a key to the same pod; walking clockwise from the key's hash,
the first pod whose in-flight count stays within ``ceil(loadFactor * (total + 1) / n)``
takes the request, so no pod carries more than ``loadFactor`` times the mean.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from yarl import URL

from ballast.gateway.failures import FailureKind

#: Virtual nodes per pod on the ring: spreads keys evenly over few pods.
VNODES = 160
#: 5xx (or broken answers) in a row that eject a pod; a refused connection ejects at once.
EJECT_AFTER = 3
EJECT_BASE_SECONDS = 1.0
EJECT_MAX_SECONDS = 30.0

Clock = Callable[[], float]


@dataclass(eq=False)
class Pod:
    """One endpoint of a backend's Service, and this gateway's view of its load and health."""

    name: str
    host: str
    port: int
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    _urls: dict[str, URL] = field(default_factory=dict, repr=False)

    @property
    def address(self) -> str:
        """``host:port``, the pod's identity on the ring (``[v6]:port`` for IPv6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, path: str) -> URL:
        """``http://address`` + ``path`` (cached per path)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL.build(
                scheme="http", host=self.host, port=self.port, path=path, encoded=True
            )
        return url

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until

    def start(self) -> None:
        self.in_flight += 1
        self.requests += 1

    def finish(self) -> None:
        self.in_flight -= 1

    def succeeded(self) -> None:
        self.failures = 0
        self.ejections = 0

    def failed(self, kind: FailureKind, now: float) -> bool:
        """Count a failure against the pod; True when it ejects the pod now."""
        if kind not in (FailureKind.CONNECT_FAILURE, FailureKind.SERVER_ERROR,
                        FailureKind.STREAM_BROKEN):  # fmt: skip
            return False  # a timeout or 429 is load, not a broken pod
        self.failures += 1
        if kind is not FailureKind.CONNECT_FAILURE and self.failures < EJECT_AFTER:
            return False
        self.failures = 0
        self.ejections += 1
        seconds = min(EJECT_BASE_SECONDS * 2 ** (self.ejections - 1), EJECT_MAX_SECONDS)
        self.ejected_until = now + seconds
        return True


def available(pods: Sequence[Pod], tried: Sequence[Pod], now: float) -> Sequence[Pod]:
    """Pods a new attempt may use: not tried by this request, and not ejected unless every
    untried pod is (then all of them: a backend never loses every pod to ejection)."""
    untried = [p for p in pods if p not in tried] if tried else pods
    healthy = [p for p in untried if p.ejected_until <= now]
    return healthy or untried


def least_loaded(pods: Sequence[Pod], rng: random.Random) -> Pod:
    """The pod with the fewest requests in flight, a random one of those tied (``pods``
    must not be empty)."""
    if len(pods) == 1:
        return pods[0]
    fewest = min(p.in_flight for p in pods)
    tied = [p for p in pods if p.in_flight == fewest]
    return tied[int(rng.random() * len(tied))]


def key_hash(key: str) -> int:
    """A 64-bit hash that is the same in every process (unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class Ring:
    """A consistent-hash ring over pods, from their addresses alone."""

    def __init__(self, pods: Sequence[Pod], vnodes: int = VNODES) -> None:
        points = sorted(
            (key_hash(f"{p.address}#{i}"), p.address) for p in pods for i in range(vnodes)
        )
        self._pods = {p.address for p in pods}
        self._hashes = [h for h, _ in points]
        self._owners = [a for _, a in points]

    def walk(self, key: str) -> Iterator[str]:
        """Every pod address, in ring order clockwise from ``key``'s point, each once."""
        n = len(self._owners)
        if not n:
            return
        start = bisect.bisect(self._hashes, key_hash(key))
        seen: set[str] = set()
        for i in range(n):
            owner = self._owners[(start + i) % n]
            if owner not in seen:
                seen.add(owner)
                yield owner
                if len(seen) == self.size:
                    return

    @property
    def size(self) -> int:
        return len(self._pods)


def bounded_pick(
    ring: Ring, key: str, pods: Sequence[Pod], candidates: Sequence[Pod], load_factor: float
) -> tuple[Pod, bool] | None:
    """The pod for ``key`` among ``candidates``, and whether it is the key's first choice.

    The bound uses the load of every ready pod (``pods``): a pod takes the request while its
    in-flight count plus this request stays within ``ceil(load_factor * (total + 1) / n)``.
    None when no candidate is on the ring.
    """
    total = sum(p.in_flight for p in pods)
    cap = math.ceil(load_factor * (total + 1) / max(len(pods), 1))
    by_address = {p.address: p for p in candidates}
    first = True
    fallback: Pod | None = None
    for address in ring.walk(key):
        pod = by_address.get(address)
        if pod is None:
            first = False  # the key's own pod is tried, ejected or gone: a spill
            continue
        if pod.in_flight + 1 <= cap:
            return pod, first
        fallback = fallback or pod
        first = False
    return (fallback, False) if fallback is not None else None

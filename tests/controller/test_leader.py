"""Leader election: the pure rule, and electors racing for one Lease in the emulator."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable

import kopf
import pytest

from ballast.controller.kube import KubeClient
from ballast.controller.leader import LEASES, Elector, decide, micro_time
from tests.emulator import running

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def lease(holder: str, renewed_ago: float, duration: int = 15) -> dict[str, object]:
    renewed = NOW - datetime.timedelta(seconds=renewed_ago)
    spec = {"holderIdentity": holder, "leaseDurationSeconds": duration}
    return {"spec": {**spec, "renewTime": micro_time(renewed)}}


@pytest.mark.parametrize(
    ("current", "decision"),
    [
        (None, "create"),
        (lease("me", renewed_ago=100), "renew"),  # ours, even if late: renew
        (lease("other", renewed_ago=5), "wait"),
        (lease("other", renewed_ago=16), "take"),  # ran out
        (lease("", renewed_ago=0), "take"),  # released
        ({"spec": {"holderIdentity": "other"}}, "take"),  # never renewed
    ],
)
def test_the_rule(current: dict[str, object] | None, decision: str) -> None:
    assert decide(current, "me", NOW) == decision


@pytest.fixture
async def kube() -> AsyncIterator[KubeClient]:
    async with running() as api:
        api.store.create(
            api.store.kind("", "v1", "namespaces"), None, {"metadata": {"name": "ops"}}
        )

        async def login() -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=api.url_base, token="t")

        client = KubeClient(login)
        yield client
        await client.close()


def elector(kube: KubeClient, who: str, clock: Callable[[], datetime.datetime]) -> Elector:
    return Elector(kube, "ops", "ballast", who, duration=15, renew_every=5, clock=clock)


async def test_one_holder_at_a_time_until_release_or_expiry(kube: KubeClient) -> None:
    now = [NOW]
    a, b = elector(kube, "a", lambda: now[0]), elector(kube, "b", lambda: now[0])
    assert await a.try_acquire()
    assert not await b.try_acquire()
    now[0] += datetime.timedelta(seconds=10)
    assert await a.try_acquire()  # renewed
    now[0] += datetime.timedelta(seconds=10)
    assert not await b.try_acquire()  # renewed 10 s ago: still a's
    now[0] += datetime.timedelta(seconds=6)
    assert await b.try_acquire()  # a stopped renewing 16 s ago
    stored = await kube.get(LEASES, "ops", "ballast")
    assert stored is not None
    assert stored["spec"]["holderIdentity"] == "b"
    assert stored["spec"]["leaseTransitions"] == 1
    await b.release()
    assert await a.try_acquire()  # released: no need to wait


async def test_two_replicas_taking_an_expired_lease_at_once_one_wins(kube: KubeClient) -> None:
    now = [NOW]
    old = elector(kube, "old", lambda: now[0])
    assert await old.try_acquire()
    now[0] += datetime.timedelta(seconds=30)
    a, b = elector(kube, "a", lambda: now[0]), elector(kube, "b", lambda: now[0])
    # Both read the expired Lease; the second PUT carries a stale resourceVersion: 409.
    current = await kube.get(LEASES, "ops", "ballast")
    assert current is not None
    rv = current["metadata"]["resourceVersion"]
    a._rv = b._rv = rv
    body_a, body_b = a._lease(now[0]), b._lease(now[0])
    await kube.replace(LEASES, "ops", "ballast", body_a)
    with pytest.raises(Exception, match="409"):
        await kube.replace(LEASES, "ops", "ballast", body_b)
    assert not await b.try_acquire()  # b re-reads: a holds it, freshly renewed

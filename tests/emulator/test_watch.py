"""Watch semantics: replay by resourceVersion, the list-then-watch handover, selectors, timeouts.

Reference: https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.emulator import KubeEmulator

CM = "/api/v1/namespaces/ai/configmaps"


def _cm_kind(api: KubeEmulator) -> Any:
    return api.store.kind("", "v1", "configmaps")


async def collect(
    http: aiohttp.ClientSession, params: dict[str, str], count: int
) -> list[tuple[str, str]]:
    """The first ``count`` events of a watch as (type, name)."""
    out: list[tuple[str, str]] = []
    async with http.get(CM, params={"watch": "true", **params}) as rsp:
        assert rsp.status == 200
        async for line in rsp.content:
            event = json.loads(line)
            out.append(
                (
                    event["type"],
                    event["object"].get("metadata", {}).get("name", event["object"].get("code")),
                )
            )
            if len(out) == count:
                break
    return out


async def test_watch_without_resource_version_lists_then_streams(
    api: KubeEmulator, http: aiohttp.ClientSession
) -> None:
    api.store.create(_cm_kind(api), "ai", {"metadata": {"name": "old"}})
    task = asyncio.create_task(collect(http, {}, 2))
    await asyncio.sleep(0.2)
    api.store.create(_cm_kind(api), "ai", {"metadata": {"name": "new"}})
    assert await asyncio.wait_for(task, 5) == [("ADDED", "old"), ("ADDED", "new")]


async def test_watch_from_a_list_resource_version_misses_nothing(
    api: KubeEmulator, http: aiohttp.ClientSession
) -> None:
    api.store.create(_cm_kind(api), "ai", {"metadata": {"name": "a"}})
    async with http.get(CM) as rsp:
        rv = (await rsp.json())["metadata"]["resourceVersion"]
    # Changes between the list and the watch request are replayed, in order, once.
    api.store.create(_cm_kind(api), "ai", {"metadata": {"name": "b"}})
    api.store.delete(_cm_kind(api), "ai", "a")
    events = await asyncio.wait_for(collect(http, {"resourceVersion": rv}, 2), 5)
    assert events == [("ADDED", "b"), ("DELETED", "a")]


async def test_an_expired_resource_version_is_410_gone_in_the_stream(
    api: KubeEmulator, http: aiohttp.ClientSession
) -> None:
    api.store.history = 2
    for i in range(5):
        api.store.create(_cm_kind(api), "ai", {"metadata": {"name": f"c{i}"}})
    assert await asyncio.wait_for(collect(http, {"resourceVersion": "1"}, 1), 5) == [("ERROR", 410)]


async def test_leaving_and_entering_a_selector_is_deleted_and_added(
    api: KubeEmulator, http: aiohttp.ClientSession
) -> None:
    kind = _cm_kind(api)
    api.store.create(kind, "ai", {"metadata": {"name": "c", "labels": {"app": "x"}}})
    task = asyncio.create_task(collect(http, {"labelSelector": "app=x"}, 3))
    await asyncio.sleep(0.2)

    def relabel(value: str) -> Any:
        return lambda o: {**o, "metadata": {**o["metadata"], "labels": {"app": value}}}

    api.store.write(kind, "ai", "c", relabel("y"))
    api.store.write(kind, "ai", "c", relabel("x"))
    assert await asyncio.wait_for(task, 5) == [("ADDED", "c"), ("DELETED", "c"), ("ADDED", "c")]


async def test_watch_ends_after_timeout_seconds(http: aiohttp.ClientSession) -> None:
    async def drain() -> int:
        async with http.get(CM, params={"watch": "true", "timeoutSeconds": "1"}) as rsp:
            return len([line async for line in rsp.content if line.strip()])

    assert await asyncio.wait_for(drain(), 5) == 0


async def test_watch_of_one_namespace_ignores_others(
    api: KubeEmulator, http: aiohttp.ClientSession
) -> None:
    api.store.create(api.store.kind("", "v1", "namespaces"), None, {"metadata": {"name": "other"}})
    task = asyncio.create_task(collect(http, {}, 1))
    await asyncio.sleep(0.2)
    api.store.create(_cm_kind(api), "other", {"metadata": {"name": "elsewhere"}})
    api.store.create(_cm_kind(api), "ai", {"metadata": {"name": "here"}})
    assert await asyncio.wait_for(task, 5) == [("ADDED", "here")]


async def test_discovery_lists_the_status_subresource(http: aiohttp.ClientSession) -> None:
    async with http.get("/apis/ballast.dev/v1alpha1") as rsp:
        names = {r["name"] for r in (await rsp.json())["resources"]}
    assert names == {"llmservices", "llmservices/status"}

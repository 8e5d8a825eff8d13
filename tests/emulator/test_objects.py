"""The emulator's object semantics, each against documented Kubernetes API behaviour.

References: https://kubernetes.io/docs/reference/using-api/api-concepts/ (resource
versions, create/update/patch, 409s), .../custom-resources/custom-resource-definitions/
#status-subresource, .../overview/working-with-objects/finalizers/ and
.../architecture/garbage-collection/.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.emulator import KubeEmulator

CM = "/api/v1/namespaces/ai/configmaps"
LLMS = "/apis/ballast.dev/v1alpha1/namespaces/ai/llmservices"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}


async def call(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body)
    hdrs = {
        "Content-Type": "application/json",
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    async with http.request(method, path, data=data, headers=hdrs) as rsp:
        return rsp.status, await rsp.json()


async def merge(http: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    return await call(http, "PATCH", path, body, Content_Type="application/merge-patch+json")


def cm(name: str = "c", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}


def llms(name: str = "s") -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"a": 1}, "status": {"phase": "Faked"}}


async def test_create_answers_201_with_server_fields(http: aiohttp.ClientSession) -> None:
    status, obj = await call(http, "POST", CM, cm())
    assert status == 201
    meta = obj["metadata"]
    assert all(meta[f] for f in ("uid", "creationTimestamp", "resourceVersion"))
    assert (obj["kind"], obj["apiVersion"], meta["namespace"]) == ("ConfigMap", "v1", "ai")


async def test_create_of_an_existing_name_is_409_already_exists(
    http: aiohttp.ClientSession,
) -> None:
    await call(http, "POST", CM, cm())
    status, body = await call(http, "POST", CM, cm())
    assert (status, body["kind"], body["reason"]) == (409, "Status", "AlreadyExists")


async def test_generate_name_makes_a_unique_name(http: aiohttp.ClientSession) -> None:
    body = {"metadata": {"generateName": "ev-"}}
    names = {(await call(http, "POST", CM, body))[1]["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3
    assert all(n.startswith("ev-") for n in names)


async def test_create_in_a_missing_namespace_is_404(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "POST", "/api/v1/namespaces/nope/configmaps", cm())
    assert (status, body["reason"]) == (404, "NotFound")


async def test_get_of_a_missing_object_is_a_404_status(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", f"{CM}/missing")
    assert (status, body["kind"], body["reason"], body["code"]) == (404, "Status", "NotFound", 404)


async def test_namespaces_are_listed_and_fetched(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", "/api/v1/namespaces")
    assert status == 200
    assert [n["metadata"]["name"] for n in body["items"]] == ["ai"]
    status, body = await call(http, "GET", "/api/v1/namespaces/ai")
    assert (status, body["kind"]) == (200, "Namespace")


async def test_list_filters_by_label_selector(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CM, cm("a", app="x", tier="1"))
    await call(http, "POST", CM, cm("b", app="y"))
    await call(http, "POST", CM, cm("c"))
    cases = {
        "app=x": ["a"],
        "app==y": ["b"],
        "app!=x": ["b", "c"],
        "app": ["a", "b"],
        "!app": ["c"],
        "app in (x,y)": ["a", "b"],
        "app notin (x)": ["b", "c"],
        "app=x,tier=1": ["a"],
    }
    for selector, expected in cases.items():
        async with http.get(CM, params={"labelSelector": selector}) as rsp:
            names = [o["metadata"]["name"] for o in (await rsp.json())["items"]]
        assert names == expected, selector


async def test_list_filters_by_name_field_selector(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CM, cm("a"))
    await call(http, "POST", CM, cm("b"))
    async with http.get(CM, params={"fieldSelector": "metadata.name=b"}) as rsp:
        assert [o["metadata"]["name"] for o in (await rsp.json())["items"]] == ["b"]


async def test_list_carries_the_current_resource_version(http: aiohttp.ClientSession) -> None:
    _, obj = await call(http, "POST", CM, cm())
    _, body = await call(http, "GET", CM)
    assert body["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    assert body["kind"] == "ConfigMapList"


async def test_every_change_bumps_the_resource_version_and_a_no_op_does_not(
    http: aiohttp.ClientSession,
) -> None:
    _, created = await call(http, "POST", CM, cm())
    _, changed = await merge(http, f"{CM}/c", {"data": {"k": "w"}})
    _, same = await merge(http, f"{CM}/c", {"data": {"k": "w"}})
    rv = [int(o["metadata"]["resourceVersion"]) for o in (created, changed, same)]
    assert rv[1] > rv[0]
    assert rv[2] == rv[1]


async def test_merge_patch_merges_objects_replaces_lists_and_null_deletes(
    http: aiohttp.ClientSession,
) -> None:
    body = {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}
    await call(http, "POST", CM, body)
    _, obj = await merge(http, f"{CM}/c", {"data": {"a": None, "c": "3"}})
    assert obj["data"] == {"b": "2", "c": "3"}


async def test_stale_resource_version_is_409_conflict(http: aiohttp.ClientSession) -> None:
    _, old = await call(http, "POST", CM, cm())
    await merge(http, f"{CM}/c", {"data": {"k": "new"}})
    stale = old["metadata"]["resourceVersion"]
    status, body = await merge(http, f"{CM}/c", {"metadata": {"resourceVersion": stale}})
    assert (status, body["reason"]) == (409, "Conflict")
    old["data"] = {"k": "put"}
    status, body = await call(http, "PUT", f"{CM}/c", old)
    assert (status, body["reason"]) == (409, "Conflict")


async def test_put_replaces_the_object_and_keeps_server_fields(
    http: aiohttp.ClientSession,
) -> None:
    _, obj = await call(http, "POST", CM, cm())
    status, new = await call(
        http, "PUT", f"{CM}/c", {"metadata": {"name": "c"}, "data": {"x": "y"}}
    )
    assert status == 200
    assert new["data"] == {"x": "y"}
    assert new["metadata"]["uid"] == obj["metadata"]["uid"]
    assert "labels" not in new["metadata"]


async def test_json_patch_with_a_failing_test_op_is_422(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CM, cm())
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
    ]
    status, body = await call(http, "PATCH", f"{CM}/c", ops, **JSONPATCH)
    assert (status, body["reason"]) == (422, "Invalid")
    _, now = await call(http, "GET", f"{CM}/c")
    ops[0]["value"] = now["metadata"]["resourceVersion"]
    status, body = await call(http, "PATCH", f"{CM}/c", ops, **JSONPATCH)
    assert (status, body["metadata"]["finalizers"]) == (200, ["x"])


async def test_unemulated_patch_types_are_415_not_silently_merged(
    http: aiohttp.ClientSession,
) -> None:
    await call(http, "POST", CM, cm())
    for content_type in ("application/strategic-merge-patch+json", "application/apply-patch+yaml"):
        status, body = await call(
            http, "PATCH", f"{CM}/c", {"data": {"k": "z"}}, Content_Type=content_type
        )
        assert (status, body["reason"]) == (415, "UnsupportedMediaType")
    _, obj = await call(http, "GET", f"{CM}/c")
    assert obj["data"] == {"k": "v"}


async def test_status_is_dropped_on_create_and_ignored_by_the_main_resource(
    http: aiohttp.ClientSession,
) -> None:
    status, obj = await call(http, "POST", LLMS, llms())
    assert status == 201
    assert "status" not in obj
    _, obj = await merge(http, f"{LLMS}/s", {"spec": {"a": 2}, "status": {"phase": "X"}})
    assert (obj["spec"], "status" in obj) == ({"a": 2}, False)


async def test_status_subresource_changes_only_status(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", LLMS, llms())
    _, obj = await merge(http, f"{LLMS}/s/status", {"spec": {"a": 9}, "status": {"phase": "Ready"}})
    assert (obj["spec"], obj["status"]) == ({"a": 1}, {"phase": "Ready"})
    assert obj["metadata"]["generation"] == 1


async def test_status_subresource_of_a_kind_without_one_is_404(
    http: aiohttp.ClientSession,
) -> None:
    await call(http, "POST", CM, cm())
    status, _ = await merge(http, f"{CM}/c/status", {"status": {}})
    assert status == 404


async def test_generation_counts_spec_changes_only(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", LLMS, llms())
    _, obj = await merge(http, f"{LLMS}/s", {"metadata": {"labels": {"x": "y"}}})
    assert obj["metadata"]["generation"] == 1
    _, obj = await merge(http, f"{LLMS}/s", {"spec": {"a": 2}})
    assert obj["metadata"]["generation"] == 2


async def test_delete_with_finalizers_waits_for_them(http: aiohttp.ClientSession) -> None:
    body = {**cm(), "metadata": {"name": "c", "finalizers": ["ballast.dev/test"]}}
    await call(http, "POST", CM, body)
    status, obj = await call(http, "DELETE", f"{CM}/c")
    assert status == 200
    assert obj["metadata"]["deletionTimestamp"]
    assert (await call(http, "GET", f"{CM}/c"))[0] == 200
    await merge(http, f"{CM}/c", {"metadata": {"finalizers": None}})
    assert (await call(http, "GET", f"{CM}/c"))[0] == 404


async def test_deleting_an_owner_collects_its_dependents(
    http: aiohttp.ClientSession, api: KubeEmulator
) -> None:
    _, owner = await call(http, "POST", LLMS, llms("owner"))
    _, other = await call(http, "POST", LLMS, llms("other"))

    def ref(o: dict[str, Any]) -> dict[str, Any]:
        meta = o["metadata"]
        return {
            "apiVersion": "ballast.dev/v1alpha1",
            "kind": "LLMService",
            "name": meta["name"],
            "uid": meta["uid"],
        }

    only = {"metadata": {"name": "only", "ownerReferences": [ref(owner)]}}
    both = {"metadata": {"name": "both", "ownerReferences": [ref(owner), ref(other)]}}
    await call(http, "POST", CM, only)
    await call(http, "POST", CM, both)
    await call(http, "DELETE", f"{LLMS}/owner")
    assert (await call(http, "GET", f"{CM}/only"))[0] == 404
    assert (await call(http, "GET", f"{CM}/both"))[0] == 200  # another owner is still there


async def test_orphan_propagation_keeps_dependents(http: aiohttp.ClientSession) -> None:
    _, owner = await call(http, "POST", LLMS, llms("owner"))
    ref = {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "LLMService",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    await call(http, "POST", CM, {"metadata": {"name": "dep", "ownerReferences": [ref]}})
    await call(http, "DELETE", f"{LLMS}/owner", {"propagationPolicy": "Orphan"})
    status, dep = await call(http, "GET", f"{CM}/dep")
    assert status == 200
    assert "ownerReferences" not in dep["metadata"]


async def test_a_dependent_of_a_missing_owner_is_collected(http: aiohttp.ClientSession) -> None:
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "no-such-uid"}
    status, _ = await call(
        http, "POST", CM, {"metadata": {"name": "dep", "ownerReferences": [ref]}}
    )
    assert status == 201
    assert (await call(http, "GET", f"{CM}/dep"))[0] == 404


async def test_writes_are_counted_from_the_request_log(
    http: aiohttp.ClientSession, api: KubeEmulator
) -> None:
    start = len(api.requests)
    await call(http, "POST", CM, cm())
    await call(http, "GET", f"{CM}/c")
    await merge(http, f"{CM}/c", {"data": {"k": "w"}})
    await call(http, "DELETE", f"{CM}/c")
    assert [r.method.value for r in api.writes(start)] == ["POST", "PATCH", "DELETE"]


async def test_faults_answer_matching_requests_until_cleared(
    http: aiohttp.ClientSession, api: KubeEmulator
) -> None:
    from tests.emulator.errors import ApiError

    clear = api.fail(lambda r: r.method.value == "POST", ApiError(403, "Forbidden", "no"))
    status, body = await call(http, "POST", CM, cm())
    assert (status, body["reason"]) == (403, "Forbidden")
    clear()
    assert (await call(http, "POST", CM, cm()))[0] == 201

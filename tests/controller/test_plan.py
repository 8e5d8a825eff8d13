"""The plan: observed children + desired objects -> the writes, as a table of cases (no I/O)."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from ballast import render
from ballast.controller.children import Child
from ballast.controller.patches import FIELDS_ANNOTATION, applied_fields, with_fields
from ballast.controller.plan import (
    Action,
    Conflict,
    Create,
    Delete,
    Patch,
    fields_in,
    hash_of,
    key_of,
    plan,
    plan_restore,
)
from tests.factories import external, make_llmservice, vllm

UID = "uid-1"
Obj = dict[str, Any]


def rendered(**backend: Any) -> list[Obj]:
    return render.objects(make_llmservice(vllm(**backend), external(), uid=UID), {"primary": True})


def observed_as(objs: list[Obj], uid: str = UID) -> dict[tuple[str, str], Child]:
    """The index entries of ``objs`` as if the operator had written them, controlled by ``uid``."""
    return {
        key_of(o): Child(
            o["kind"], o["metadata"]["name"], hash_of(o), uid, fields=fields_in(with_fields(o))
        )
        for o in objs
    }


def summary(actions: list[Action]) -> list[str]:
    out = []
    for a in actions:
        out.append(f"{type(a).__name__} {'/'.join(a.key)}")
    return out


def test_nothing_exists_everything_is_created_in_render_order() -> None:
    desired = rendered()
    actions = plan(desired, {}, UID)
    assert all(isinstance(a, Create) for a in actions)
    assert [a.key for a in actions] == [key_of(o) for o in desired]


def test_everything_in_sync_plans_nothing() -> None:
    desired = rendered()
    assert plan(desired, observed_as(desired), UID) == []


CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "more replicas: Deployment patched, a PDB created",
        {"replicas": 3},
        ["Patch Deployment/chat-primary", "Create PodDisruptionBudget/chat-primary"],
    ),
    (
        "new image: only the Deployment",
        {"image": "vllm/vllm-openai:v9"},
        ["Patch Deployment/chat-primary"],
    ),
    (
        "priority: only the routes ConfigMap (pods never roll for routing)",
        {"priority": 3},
        ["Patch ConfigMap/chat-routes"],
    ),
    (
        "autoscaling added: HPA and PDB created, Deployment hands replicas over",
        {"scaling": {"minReplicas": 1, "maxReplicas": 3}},
        [
            "Patch Deployment/chat-primary",
            "Create HorizontalPodAutoscaler/chat-primary",
            "Create PodDisruptionBudget/chat-primary",
        ],
    ),
]


@pytest.mark.parametrize(("change", "backend", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_spec_change_plans_exactly_the_children_it_touches(
    change: str, backend: dict[str, Any], expected: list[str]
) -> None:
    before = rendered()
    after = rendered(**backend)
    assert sorted(summary(plan(after, observed_as(before), UID))) == sorted(expected)


def test_children_no_longer_desired_are_deleted() -> None:
    before = rendered(replicas=3)  # with a PodDisruptionBudget
    after = rendered(replicas=1)
    actions = plan(after, observed_as(before), UID)
    assert summary(actions) == [
        "Patch Deployment/chat-primary",
        "Delete PodDisruptionBudget/chat-primary",
    ]


def test_a_removed_field_is_nulled_but_hpa_owned_replicas_are_never_sent() -> None:
    before = rendered(replicas=2, nodeSelector={"gpu": "a100"})
    after = rendered(scaling={"minReplicas": 2, "maxReplicas": 4})
    patches = [a for a in plan(after, observed_as(before), UID) if isinstance(a, Patch)]
    (deployment,) = [p for p in patches if p.key == ("Deployment", "chat-primary")]
    spec = deployment.body["spec"]
    assert "replicas" not in spec  # the HPA owns it now: neither set nor nulled
    assert spec["template"]["spec"]["nodeSelector"] is None  # removed from the spec: nulled


def test_children_of_another_owner_are_never_patched_or_deleted() -> None:
    desired = rendered()
    theirs = observed_as(desired, uid="someone-else")
    stale = dict(theirs)
    stale[("PodDisruptionBudget", "chat-other")] = Child(
        "PodDisruptionBudget", "chat-other", "h", "someone-else"
    )
    actions = plan(desired, stale, UID)
    assert all(isinstance(a, Conflict) and a.holder == "someone-else" for a in actions)
    assert len(actions) == len(desired)


def test_a_child_with_a_different_hash_is_patched_with_every_owned_field() -> None:
    desired = rendered()
    observed = observed_as(desired)
    dep = ("Deployment", "chat-primary")
    observed[dep] = Child(dep[0], dep[1], "edited-by-hand", UID)
    (action,) = plan(desired, observed, UID)
    assert isinstance(action, Patch)
    want = next(o for o in desired if key_of(o) == dep)
    assert action.body == with_fields(want)  # the same fields as before: nothing nulled


def test_restore_one_child_from_its_live_state() -> None:
    desired = rendered()
    want = next(o for o in desired if o["kind"] == "Deployment")
    key = key_of(want)
    assert plan_restore(key, want, None) == Create(with_fields(want))  # deleted
    assert plan_restore(key, want, with_fields(want)) is None  # in sync
    edited = with_fields(copy.deepcopy(want))
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "other:1"  # hash kept
    action = plan_restore(key, want, edited)
    assert isinstance(action, Patch)
    assert action.obj == with_fields(want)
    assert plan_restore(key, None, edited) == Delete(key)  # no longer desired
    assert plan_restore(key, None, None) is None


def test_going_back_to_zero_deletes_the_hpa_before_the_deployment_gets_its_replicas() -> None:
    """One writer of replicas: the HPA is gone before the operator writes 0."""
    svc = make_llmservice(vllm(scaling={"minReplicas": 0, "maxReplicas": 3}), external(), uid=UID)
    awake = render.objects(svc, {"primary": True}, scale=render.Scale())
    asleep = render.objects(svc, {"primary": True}, scale=render.Scale({"primary": 0}))
    actions = summary(plan(asleep, observed_as(awake), UID))
    assert actions[0] == "Delete HorizontalPodAutoscaler/chat-primary"
    assert "Patch Deployment/chat-primary" in actions[1:]
    # and waking: only the Deployment's replicas; the HPA appears once a pod is ready
    waking = render.objects(svc, {"primary": True}, scale=render.Scale({"primary": 1}))
    assert summary(plan(waking, observed_as(asleep), UID)) == ["Patch Deployment/chat-primary"]


def test_each_write_carries_the_skeleton_of_the_fields_it_sets() -> None:
    desired = rendered(nodeSelector={"gpu": "a100"})
    (dep,) = [a.obj for a in plan(desired, {}, UID) if a.key == ("Deployment", "chat-primary")]
    skeleton = applied_fields(dep["metadata"]["annotations"][FIELDS_ANNOTATION])
    assert skeleton is not None
    assert skeleton["spec"]["template"]["spec"]["nodeSelector"] == {"gpu": 0}
    assert skeleton["spec"]["template"]["spec"]["containers"] == 0  # lists are sent whole
    assert FIELDS_ANNOTATION not in skeleton["metadata"]["annotations"]  # not itself
    assert "ballast.dev/applied-hash" in skeleton["metadata"]["annotations"]
    # children of one shape share one string (the index holds 1,000 services' worth)
    again = with_fields(
        next(o for o in rendered(nodeSelector={"gpu": "h100"}) if o["kind"] == "Deployment")
    )
    assert (
        again["metadata"]["annotations"][FIELDS_ANNOTATION]
        is dep["metadata"]["annotations"][FIELDS_ANNOTATION]
    )


def test_a_child_without_a_skeleton_is_patched_without_nulls_and_gets_one() -> None:
    """Written before the skeleton existed (or stripped by hand): nothing can be nulled safely."""
    before = rendered(replicas=2, nodeSelector={"gpu": "a100"})
    after = rendered(replicas=3)
    observed = {k: replace(c, fields=None) for k, c in observed_as(before).items()}
    (deployment,) = [
        p for p in plan(after, observed, UID) if isinstance(p, Patch) and p.key[0] == "Deployment"
    ]
    assert "nodeSelector" not in deployment.body["spec"]["template"]["spec"]
    assert FIELDS_ANNOTATION in deployment.body["metadata"]["annotations"]


def test_an_unreadable_skeleton_counts_as_none() -> None:
    assert applied_fields("{not json") is None
    assert applied_fields('["a list"]') is None
    assert applied_fields(None) is None

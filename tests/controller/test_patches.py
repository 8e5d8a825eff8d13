"""The merge patches the operator sends, and how it tells a hand edit from server defaults."""

from __future__ import annotations

from ballast.controller.patches import contains, patch_for


def test_a_patch_sends_every_owned_field() -> None:
    new = {"spec": {"a": 1, "b": {"c": [1, 2]}}}
    assert patch_for(new) == new


def test_keys_no_longer_set_become_null() -> None:
    old = {"spec": {"template": {"spec": {"nodeSelector": {"pool": "gpu"}, "x": 1}}}}
    new = {"spec": {"template": {"spec": {"x": 2}}}}
    assert patch_for(new, old) == {"spec": {"template": {"spec": {"x": 2, "nodeSelector": None}}}}


def test_replicas_handed_to_an_hpa_are_never_nulled() -> None:
    old = {"spec": {"replicas": 3, "paused": False}}
    new: dict[str, dict[str, object]] = {"spec": {}}
    assert patch_for(new, old) == {"spec": {"paused": None}}


def test_lists_are_sent_whole() -> None:
    old = {"args": ["--a", "--b"]}
    new = {"args": ["--a"]}
    assert patch_for(new, old) == {"args": ["--a"]}


def test_server_defaults_inside_objects_and_list_elements_are_not_drift() -> None:
    want = {"spec": {"containers": [{"name": "engine", "image": "x"}], "replicas": 1}}
    live = {
        "spec": {
            "containers": [{"name": "engine", "image": "x", "imagePullPolicy": "IfNotPresent"}],
            "replicas": 1,
            "revisionHistoryLimit": 10,
        },
        "status": {"readyReplicas": 1},
    }
    assert contains(live, want)


def test_changed_values_and_list_lengths_are_drift() -> None:
    want = {"spec": {"containers": [{"name": "engine", "image": "x"}]}}
    assert not contains({"spec": {"containers": [{"name": "engine", "image": "y"}]}}, want)
    assert not contains({"spec": {"containers": []}}, want)
    assert not contains({"spec": {}}, want)


def test_types_matter_true_is_not_one() -> None:
    assert not contains({"a": 1}, {"a": True})
    assert contains({"a": True}, {"a": True})


def test_quantities_compare_by_meaning_below_resources() -> None:
    want = {"resources": {"limits": {"nvidia.com/gpu": 1, "cpu": "0.5", "memory": "1024Mi"}}}
    live = {"resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "500m", "memory": "1Gi"}}}
    assert contains(live, want)
    live["resources"]["limits"]["cpu"] = "600m"
    assert not contains(live, want)


def test_elsewhere_an_int_and_its_string_differ() -> None:
    assert not contains({"spec": {"port": "8000"}}, {"spec": {"port": 8000}})

"""The shipped Argo CD health check (Lua), executed with a real Lua runtime (lupa)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lupa import LuaRuntime  # type: ignore[import-not-found]

SCRIPT = (Path(__file__).parents[2] / "docs" / "argocd" / "llmservice-health.lua").read_text()


def health(obj: dict[str, Any]) -> dict[str, str]:
    lua = LuaRuntime(unpack_returned_tuples=True)
    table = _to_lua(lua, obj)
    result = lua.execute("local obj = ...\n" + SCRIPT, table)
    return {k: result[k] for k in ("status", "message") if result[k] is not None}


def _to_lua(lua: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def obj(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"metadata": {"name": "chat", "generation": generation}}
    if status is not None:
        out["status"] = status
    return out


def ready(phase: str, observed: int = 3, message: str = "") -> dict[str, Any]:
    return {
        "observedGeneration": observed,
        "phase": phase,
        "conditions": [
            {"type": "Ready", "status": "True" if phase == "Ready" else "False", "message": message}
        ],
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "Progressing"),
        (ready("Ready"), "Healthy"),
        (ready("Degraded", message="primary out of route"), "Degraded"),
        (ready("Failed", message="spec rejected"), "Degraded"),
        (ready("Progressing"), "Progressing"),
        (ready("Pending"), "Progressing"),
        (ready("Ready", observed=2), "Progressing"),
    ],
)
def test_phase_maps_to_argo_health(status: dict[str, Any] | None, expected: str) -> None:
    assert health(obj(3, status))["status"] == expected


def test_message_comes_from_the_ready_condition() -> None:
    assert health(obj(3, ready("Degraded", message="primary out of route")))["message"] == (
        "primary out of route"
    )

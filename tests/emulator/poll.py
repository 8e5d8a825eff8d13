"""Waiting for conditions in async tests: poll until true or fail with what was last seen."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], T], seconds: float = 10, interval: float = 0.05, what: str = ""
) -> T:
    """Call ``probe`` until it returns something truthy (returned); fail after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not within {seconds}s: {what or probe!r} (last: {value!r})")
        await asyncio.sleep(interval)

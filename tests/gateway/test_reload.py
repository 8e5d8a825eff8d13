"""Routes-file reloads while requests flow: new routes apply, nothing fails, broken files are ignored."""

from __future__ import annotations

import asyncio

from tests.gateway.conftest import BackendFactory, GatewayFactory, async_client
from tests.gateway.harness import backend_row, eventually, table

MESSAGES = [{"role": "user", "content": "hi"}]


async def test_edit_applies_new_routes_without_failing_a_request(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    old = await backend("old")
    new = await backend("new")
    old.behave(delay=0.02)
    gw = await gateway([table("chat", [backend_row("old", old.url)])])
    stop = asyncio.Event()
    answered: list[str] = []

    async def client_loop() -> None:
        async with async_client(gw) as client:
            while not stop.is_set():
                raw = await client.chat.completions.with_raw_response.create(
                    model="chat", messages=MESSAGES
                )
                answered.append(raw.headers["x-ballast-backend"])

    workers = [asyncio.create_task(client_loop()) for _ in range(4)]
    await asyncio.sleep(0.3)
    gw.write(
        [
            table("chat", [backend_row("new", new.url)]),
            table("extra", [backend_row("new", new.url)]),
        ]
    )
    await eventually(lambda: "extra" in gw.state.store.current.routes)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*workers)  # any failed request would raise here
    assert answered[0] == "old"
    assert answered[-1] == "new"
    assert answered.index("new") > 0
    assert "new" not in answered[: answered.index("new")]
    assert new.seen[-1].body["model"] == "new-upstream"


async def test_broken_file_keeps_last_good_table(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])])
    snapshot = gw.state.store.current
    for broken in ("{not: [valid", '{"model": "chat", "backends": []}'):
        gw.write(broken)
        await eventually(lambda: gw.sample("ballast_gateway_routes_errors_total") >= 1)
        await asyncio.sleep(0.15)
        assert gw.state.store.current is snapshot
        async with async_client(gw) as client:
            answer = await client.chat.completions.create(model="chat", messages=MESSAGES)
        assert answer.choices[0].message.content == "hello from primary"
    # a good file again is picked up
    gw.write([table("chat2", [backend_row("primary", primary.url)])])
    await eventually(lambda: "chat2" in gw.state.store.current.routes)


async def test_deleted_file_keeps_last_good_table(
    backend: BackendFactory, gateway: GatewayFactory
) -> None:
    primary = await backend("primary")
    gw = await gateway([table("chat", [backend_row("primary", primary.url)])])
    gw.routes.unlink()
    await eventually(lambda: gw.sample("ballast_gateway_routes_errors_total") >= 1)
    assert "chat" in gw.state.store.current.routes

"""The floor: a bare aiohttp pass-through, what any Python proxy costs at least.

python bench/gateway_floor.py PORT UPSTREAM_URL [--uvloop]
"""

import sys

import aiohttp
from aiohttp import web

UPSTREAM = sys.argv[2]


async def session(app: web.Application):  # type: ignore[no-untyped-def]
    app["http"] = aiohttp.ClientSession(auto_decompress=False)
    yield
    await app["http"].close()


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {"Content-Type": "application/json"}
    async with request.app["http"].post(UPSTREAM + request.path, data=body, headers=headers) as up:
        out = web.StreamResponse(status=up.status, headers={"Content-Type": up.content_type})
        await out.prepare(request)
        async for chunk in up.content.iter_any():
            await out.write(chunk)
        await out.write_eof()
        return out


app = web.Application()
app.cleanup_ctx.append(session)
app.router.add_post("/{path:.*}", forward)
loop = None
if "--uvloop" in sys.argv:
    import uvloop

    loop = uvloop.new_event_loop()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, loop=loop)

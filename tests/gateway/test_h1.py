"""The lean upstream client against raw sockets: framing, splitting, reuse, errors."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from aiohttp import web
from yarl import URL

from ballast.gateway.h1 import BodyError, ConnectError, Disconnected, Pool
from tests.gateway.backends import free_port

Script = Callable[[int], Sequence[bytes]]  # request number -> pieces to send


class RawServer:
    """Answers each request with scripted raw bytes, piece by piece."""

    def __init__(self, script: Script, close_after: bool = False) -> None:
        self.script, self.close_after = script, close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> URL:
        assert self.server is not None
        return URL(f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/x")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                for piece in self.script(len(self.requests)):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.005)
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[RawServer]]]:
    servers: list[RawServer] = []

    async def make(script: Script, **kw: bool) -> RawServer:
        s = await RawServer(script, **kw).start()
        servers.append(s)
        return s

    yield make  # type: ignore[misc]
    for s in servers:
        await s.stop()


async def body_of(pool: Pool, url: URL) -> tuple[int, bytes]:
    resp = await pool.post(url, b'{"a":1}', [("Content-Type", "application/json")])
    return resp.status, await resp.read()


async def test_content_length_reuses_one_connection(serve) -> None:  # type: ignore[no-untyped-def]
    srv = await serve(lambda n: [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", b"lo"])
    pool = Pool()
    assert await body_of(pool, srv.url) == (200, b"hello")
    assert await body_of(pool, srv.url) == (200, b"hello")
    assert srv.connections == 1
    assert srv.requests[0].startswith(b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert srv.requests[0].endswith(b'Content-Length: 7\r\n\r\n{"a":1}')
    await pool.close()


async def test_chunked_with_extensions_trailers_and_byte_by_byte_arrival(serve) -> None:  # type: ignore[no-untyped-def]
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    srv = await serve(lambda n: [raw[i : i + 1] for i in range(len(raw))] if n == 1 else [raw])
    pool = Pool()
    assert await body_of(pool, srv.url) == (200, b"hello world")
    assert await body_of(pool, srv.url) == (200, b"hello world")
    assert srv.connections == 1
    await pool.close()


async def test_streamed_chunks_arrive_separately(serve) -> None:  # type: ignore[no-untyped-def]
    srv = await serve(
        lambda n: [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n",
            b"3\r\none\r\n",
            b"3\r\ntwo\r\n",
            b"0\r\n\r\n",
        ]
    )
    pool = Pool()
    resp = await pool.post(srv.url, b"{}", [])
    assert resp.content_type == "text/event-stream"
    assert await resp.read_chunk() == b"one"
    assert await resp.read_chunk() == b"two"
    assert await resp.read_chunk() == b""
    await pool.close()


async def test_body_until_close_and_connection_close(serve) -> None:  # type: ignore[no-untyped-def]
    srv = await serve(
        lambda n: [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"], close_after=True
    )
    pool = Pool()
    assert await body_of(pool, srv.url) == (200, b"all of it")
    assert await body_of(pool, srv.url) == (200, b"all of it")
    assert srv.connections == 2
    await pool.close()


async def test_no_content(serve) -> None:  # type: ignore[no-untyped-def]
    srv = await serve(lambda n: [b"HTTP/1.1 204 No Content\r\n\r\n"])
    pool = Pool()
    assert await body_of(pool, srv.url) == (204, b"")
    assert await body_of(pool, srv.url) == (204, b"")
    await pool.close()


async def test_idle_connection_closed_by_server_is_replaced_transparently(serve) -> None:  # type: ignore[no-untyped-def]
    srv = await serve(
        lambda n: [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], close_after=True
    )
    pool = Pool()
    await body_of(pool, srv.url)
    await asyncio.sleep(0.05)  # the server closed it; the pool may not have noticed yet
    assert await body_of(pool, srv.url) == (200, b"ok")
    await pool.close()


async def test_request_written_on_a_reused_connection_is_never_sent_twice() -> None:
    """The backend dies mid-generation: Disconnected, not a second (unaccounted) POST."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            received.append(await reader.readexactly(length))
            if len(received) == 1:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
            else:
                await asyncio.sleep(0.1)  # generating... then the engine crashes
                writer.transport.abort()
                return

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/x")
    pool = Pool()
    try:
        assert await (await pool.post(url, b'{"n":1}', [])).read() == b"ok"
        with pytest.raises(Disconnected):
            await pool.post(url, b'{"n":2}', [])
        await asyncio.sleep(0.1)
        assert received == [b'{"n":1}', b'{"n":2}']
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("pieces", "error"),
    [
        ([b"garbage\r\n\r\n"], BodyError),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], BodyError),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"], BodyError),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"], BodyError),
        ([b"HTTP/1.1 200 O"], BodyError),
        ([], Disconnected),
    ],
)
async def test_broken_responses_raise(serve, pieces: list[bytes], error: type[Exception]) -> None:  # type: ignore[no-untyped-def]
    srv = await serve(lambda n: pieces, close_after=True)
    pool = Pool()
    with pytest.raises(error):
        await body_of(pool, srv.url)
    await pool.close()


OK = "HTTP/1.1 200 OK\r\n"


@pytest.mark.parametrize(
    "head",
    [
        OK + "Content-Length: \u00b2\r\n",  # superscript two: isdigit() but not int()
        OK + "Content-Length: \u0663\r\n",  # Arabic-Indic three: int() takes it
        OK + "Content-Length: 1_0\r\n",
        OK + "Content-Length: +3\r\n",
        OK + "Content-Length: 3\r\nContent-Length: 4\r\n",
        OK + "Content-Length: 3, 4\r\n",
        OK + "Content-Length: \r\n",
        OK + "Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n",
        OK + "Transfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n",
        OK + "Transfer-Encoding: chunked\r\n\r\n1_0\r\nabcdefghijklmnop\r\n0\r\n",
        OK + "Transfer-Encoding: chunked\r\n\r\n\u0663\r\nabc\r\n0\r\n",
        "HTTP/1.1 2\u00b20 OK\r\nContent-Length: 3\r\n",
    ],
)
async def test_numbers_are_ascii_digits_only(
    serve, head: str, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    srv = await serve(lambda n: [head.encode() + b"\r\nabc"])  # connection stays open
    pool = Pool()
    async with asyncio.timeout(2):
        with pytest.raises(BodyError):
            await body_of(pool, srv.url)
    await pool.close()
    # a ProtocolError, not an exception escaping data_received ("Fatal error" from asyncio)
    assert not [r for r in caplog.records if r.name == "asyncio"]


async def test_repeated_equal_content_length_is_accepted(serve) -> None:  # type: ignore[no-untyped-def]
    srv = await serve(
        lambda n: [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok"]
    )
    pool = Pool()
    assert await body_of(pool, srv.url) == (200, b"ok")
    await pool.close()


async def test_chunked_with_content_length_is_not_reused(serve) -> None:  # type: ignore[no-untyped-def]
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    srv = await serve(lambda n: [raw])
    pool = Pool()
    assert await body_of(pool, srv.url) == (200, b"ok")
    assert await body_of(pool, srv.url) == (200, b"ok")
    assert srv.connections == 2
    await pool.close()


async def test_refused_connection_is_connect_error() -> None:
    pool = Pool()
    with pytest.raises(ConnectError):
        await pool.post(URL(f"http://127.0.0.1:{free_port()}/v1/x"), b"{}", [])


async def test_large_body_is_read_with_flow_control(serve) -> None:  # type: ignore[no-untyped-def]
    big = b"x" * (3 * 1024 * 1024)
    srv = await serve(lambda n: [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big), big])
    pool = Pool()
    resp = await pool.post(srv.url, b"{}", [])
    await asyncio.sleep(
        0.2
    )  # let the server push: the client pauses reading at its high-water mark
    assert resp._buffered <= 2 * 1024 * 1024
    assert await resp.read() == big
    await pool.close()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_upstream_with_hostname_check(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"host": request.headers["Host"], "body": await request.text()})

    app = web.Application()
    app.router.add_post("/v1/x", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx).start()
    port = runner.addresses[0][1]
    try:
        pool = Pool(ssl_context=ssl.create_default_context(cafile=str(cert)))
        resp = await pool.post(URL(f"https://localhost:{port}/v1/x"), b"hi", [])
        assert await resp.read() == b'{"host": "localhost:%d", "body": "hi"}' % port
        with pytest.raises(ConnectError):  # a certificate for another name is refused
            await Pool(ssl_context=ssl.create_default_context()).post(
                URL(f"https://localhost:{port}/v1/x"), b"", []
            )
        await pool.close()
    finally:
        await runner.cleanup()


async def test_large_request_body_arrives_intact(serve) -> None:  # type: ignore[no-untyped-def]
    srv = await serve(lambda n: [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    pool = Pool()
    body = b"y" * (5 * 1024 * 1024)
    resp = await pool.post(srv.url, body, [])
    assert await resp.read() == b"ok"
    assert srv.requests[0].endswith(b"\r\n\r\n" + body)
    await pool.close()

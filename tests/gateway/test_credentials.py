"""Local credentials: environment variables and files (re-read on change); never the client's key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ballast.gateway.credentials import Credentials, CredentialsUnavailable
from ballast.routing import CredentialRef
from tests.gateway.conftest import BackendFactory, GatewayFactory, async_client
from tests.gateway.harness import backend_row, table


async def test_env_and_file_keys_reach_the_backend_not_the_clients(
    backend: BackendFactory,
    gateway: GatewayFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = await backend("a"), await backend("b")
    monkeypatch.setenv("BALLAST_TEST_KEY", "sk-env")
    key_file = tmp_path / "key"
    key_file.write_text("sk-file\n")
    gw = await gateway([
        table("env", [backend_row("a", a.url, credentials={"env": "BALLAST_TEST_KEY"})]),
        table("file", [backend_row("b", b.url, credentials={"file": str(key_file)})]),
        table("none", [backend_row("a", a.url)]),
    ])  # fmt: skip
    async with async_client(gw) as client:
        for model in ("env", "file", "none"):
            await client.embeddings.create(model=model, input="x")
    assert a.seen[0].headers["Authorization"] == "Bearer sk-env"
    assert b.seen[0].headers["Authorization"] == "Bearer sk-file"
    assert "Authorization" not in a.seen[1].headers  # the client's key is never passed on


async def test_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    now = [0.0]
    creds = Credentials(clock=lambda: now[0], file_recheck=1.0)
    path = tmp_path / "key"
    path.write_text("one")
    ref = CredentialRef(file=str(path))
    assert await creds.authorization(ref) == "Bearer one"
    path.write_text("two!")
    os.utime(path, ns=(1, 1))
    assert await creds.authorization(ref) == "Bearer one"  # within the recheck interval
    now[0] = 2.0
    assert await creds.authorization(ref) == "Bearer two!"


async def test_missing_sources_raise_without_the_value(tmp_path: Path) -> None:
    creds = Credentials(environ={})
    with pytest.raises(CredentialsUnavailable, match="NOPE"):
        await creds.authorization(CredentialRef(env="NOPE"))
    with pytest.raises(CredentialsUnavailable):
        await creds.authorization(CredentialRef(file=str(tmp_path / "absent")))
    with pytest.raises(CredentialsUnavailable, match="no Kubernetes API"):
        await creds.authorization(CredentialRef(secret={"namespace": "a", "name": "b", "key": "c"}))


async def test_a_key_spanning_lines_is_refused_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("sk-one\nX-Injected: yes\n")
    creds = Credentials(environ={"EMPTY": ""})
    with pytest.raises(CredentialsUnavailable, match="span lines") as err:
        await creds.authorization(CredentialRef(file=str(path)))
    assert "sk-one" not in str(err.value)
    with pytest.raises(CredentialsUnavailable, match="empty"):
        await creds.authorization(CredentialRef(env="EMPTY"))

"""`ballast fetch url` against a plain HTTP server: resume, size check, marker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fetch.fakehub import FakeHub, Fault
from tests.fetch.test_hub import blob

SIZE = 3 * (1 << 20) + 11


def setup(hub: FakeHub, **fault: Any) -> tuple[str, bytes]:
    data = blob("gguf", SIZE)
    hub.plain["tiny-Q4_K_M.gguf"] = data
    if fault:
        hub.faults["tiny-Q4_K_M.gguf"] = Fault(**fault)
    return f"{hub.url}/files/tiny-Q4_K_M.gguf", data


def leftovers(dest: Path) -> set[str]:
    return {p.name for p in dest.iterdir()} if dest.exists() else set()


def test_downloads_to_model_gguf_with_a_marker_and_a_result_line(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    url, data = setup(hub)
    dest = tmp_path / "k"

    run = fetch("url", "--url", url, "--dest", str(dest))

    assert run.code == 0, run.stderr
    assert (dest / "model.gguf").read_bytes() == data
    assert run.result == {"revision": None, "bytes": SIZE, "files": 1}
    assert json.loads(run.log) == run.result
    m = json.loads((dest / ".ballast-complete").read_text())
    assert {k: m[k] for k in ("source", "url", "requested", "revision", "files", "bytes")} == {
        "source": "url",
        "url": url,
        "requested": None,
        "revision": None,
        "files": 1,
        "bytes": SIZE,
    }
    assert leftovers(dest) == {"model.gguf", ".ballast-complete"}


def test_a_second_run_makes_no_request(hub: FakeHub, fetch: Any, tmp_path: Path) -> None:
    url, _ = setup(hub)
    dest = tmp_path / "k"
    assert fetch("url", "--url", url, "--dest", str(dest)).code == 0
    first = hub.total_body_bytes()
    hub.reset_counts()

    again = fetch("url", "--url", url, "--dest", str(dest))

    assert again.code == 0, again.stderr
    assert again.result["bytes"] == SIZE
    assert hub.seen == []
    print(f"\nbody bytes: first run {first}, second run {hub.total_body_bytes()}")


def test_a_dropped_connection_is_resumed_with_range(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    url, data = setup(hub, drop_after=1_000_003)
    dest = tmp_path / "k"

    run = fetch("url", "--url", url, "--dest", str(dest))

    assert run.code == 0, run.stderr
    assert (dest / "model.gguf").read_bytes() == data
    gets = hub.content_gets("tiny-Q4_K_M.gguf")
    assert [g.range for g in gets] == [None, "bytes=1000003-"]
    assert gets[1].if_range == f'"{__import__("hashlib").sha1(data).hexdigest()}"'
    assert hub.body_bytes["tiny-Q4_K_M.gguf"] == SIZE


def test_a_restarted_job_goes_on_from_the_part_file(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    url, data = setup(hub, drop_after=2_000_000, then_status=503)
    dest = tmp_path / "k"

    failed = fetch("url", "--url", url, "--dest", str(dest), "--retries", "0")
    assert failed.code == 1
    assert "giving up" in failed.log
    assert "HTTP 503" in failed.log
    assert not (dest / ".ballast-complete").exists()
    assert (dest / "model.gguf.part").stat().st_size == 2_000_000

    del hub.faults["tiny-Q4_K_M.gguf"]
    again = fetch("url", "--url", url, "--dest", str(dest))

    assert again.code == 0, again.stderr
    assert (dest / "model.gguf").read_bytes() == data
    assert hub.content_gets()[-1].range == "bytes=2000000-"
    assert hub.body_bytes["tiny-Q4_K_M.gguf"] == SIZE
    assert leftovers(dest) == {"model.gguf", ".ballast-complete"}


def test_a_file_changed_upstream_starts_over(hub: FakeHub, fetch: Any, tmp_path: Path) -> None:
    url, data = setup(hub, drop_after=1_500_000, changed=True)
    dest = tmp_path / "k"

    run = fetch("url", "--url", url, "--dest", str(dest))

    assert run.code == 0, run.stderr
    assert (dest / "model.gguf").read_bytes() == data
    assert hub.body_bytes["tiny-Q4_K_M.gguf"] == SIZE + 1_500_000


def test_a_size_mismatch_is_refused_without_a_marker(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    url, _ = setup(hub, drop_after=1_000_000, partial_total=SIZE + 1)
    dest = tmp_path / "k"

    run = fetch("url", "--url", url, "--dest", str(dest))

    assert run.code == 2, run.stderr
    assert run.log.startswith("size mismatch for ")
    assert f"the server now says {SIZE + 1} bytes, earlier {SIZE}" in run.log
    assert leftovers(dest) == set()


def test_not_found_is_permanent_and_a_5xx_transient(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    url, _ = setup(hub)
    missing = fetch("url", "--url", url + "-nope", "--dest", str(tmp_path / "a"))
    assert missing.code == 2
    assert "not found (HTTP 404)" in missing.log
    hub.faults["tiny-Q4_K_M.gguf"] = Fault(status=503)
    busy = fetch("url", "--url", url, "--dest", str(tmp_path / "b"), "--retries", "1")
    assert busy.code == 1
    assert "HTTP 503" in busy.log
    for d in ("a", "b"):
        assert not (tmp_path / d / ".ballast-complete").exists()


def test_a_url_that_is_not_http_is_a_bad_argument(fetch: Any, tmp_path: Path) -> None:
    run = fetch("url", "--url", "file:///etc/passwd", "--dest", str(tmp_path / "k"))
    assert run.code == 2
    assert "http:// or https://" in run.log

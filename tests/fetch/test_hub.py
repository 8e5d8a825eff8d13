"""`ballast fetch hf` against the fake hub: one commit's files, byte-exact, once."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.fetch.fakehub import FakeHub, Fault, Repo, commit_id

MiB = 1 << 20
TOKEN = "hf_secretTOKENvalue0123456789"


def blob(seed: str, size: int) -> bytes:
    """Deterministic, non-repeating-looking bytes of ``size``."""
    chunk = (seed * 64).encode()[:251]
    return (chunk * (size // len(chunk) + 1))[:size]


def llama_like() -> dict[str, bytes]:
    """A tiny repository shaped like a real one: two safetensors shards beside duplicates."""
    return {
        "config.json": b'{"architectures": ["LlamaForCausalLM"]}',
        "generation_config.json": b"{}",
        "tokenizer.json": blob("tok", 20_000),
        "tokenizer_config.json": b'{"chat_template": "x"}',
        "model.safetensors.index.json": b'{"weight_map": {}}',
        "model-00001-of-00002.safetensors": blob("w1", 3 * MiB + 17),
        "model-00002-of-00002.safetensors": blob("w2", MiB + 5),
        "pytorch_model.bin": blob("pt", 4096),
        "original/consolidated.00.pth": blob("orig", 4096),
        "original/params.json": b"{}",
        "model-Q4_K_M.gguf": blob("gguf", 2048),
        "onnx/model.onnx": blob("onnx", 1024),
        "README.md": b"# tiny",
    }


KEPT = {
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "model.safetensors.index.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "README.md",
}


def files_in(dest: Path) -> set[str]:
    return {
        p.relative_to(dest).as_posix()
        for p in dest.rglob("*")
        if p.is_file() and ".cache" not in p.parts and p.name != ".ballast-complete"
    }


def marker(dest: Path) -> dict[str, Any]:
    value = json.loads((dest / ".ballast-complete").read_text())
    assert isinstance(value, dict)
    return value


def test_main_is_resolved_once_and_every_engine_file_arrives_byte_exact(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    files = llama_like()
    hub.repos["org/tiny"] = Repo.single(files)
    sha = commit_id("c1")
    dest = tmp_path / "cache" / "k1"

    run = fetch("hf", "--repo", "org/tiny", "--dest", str(dest))

    assert run.code == 0, run.stderr
    assert files_in(dest) == KEPT
    for name in KEPT:
        assert (dest / name).read_bytes() == files[name], name
    size = sum(len(files[n]) for n in KEPT)
    assert run.result == {"revision": sha, "bytes": size, "files": len(KEPT)}
    assert json.loads(run.log) == run.result
    m = marker(dest)
    assert m["source"] == "hf"
    assert m["repo"] == "org/tiny"
    assert (m["requested"], m["revision"], m["gguf"]) == ("main", sha, None)
    assert (m["files"], m["bytes"]) == (len(KEPT), size)
    assert m["completedAt"].endswith("Z")
    # One resolution of `main`; every file fetched at the commit, never at the branch.
    resolutions = [s for s in hub.seen if s.path.startswith("/api/")]
    assert [s.path for s in resolutions] == ["/api/models/org/tiny/revision/main"]
    file_requests = [s for s in hub.seen if not s.path.startswith("/api/")]
    assert file_requests
    assert all(f"/resolve/{sha}/" in s.path for s in file_requests)
    assert {s.path.rsplit(f"{sha}/", 1)[1] for s in hub.content_gets()} == KEPT
    print(f"\nfirst run: {hub.total_body_bytes()} body bytes from the fake hub")


def test_a_second_run_makes_no_request_at_all(hub: FakeHub, fetch: Any, tmp_path: Path) -> None:
    hub.repos["org/tiny"] = Repo.single(llama_like())
    dest = tmp_path / "k"
    first = fetch("hf", "--repo", "org/tiny", "--dest", str(dest))
    assert first.code == 0, first.stderr
    first_bytes = hub.total_body_bytes()
    hub.reset_counts()

    second = fetch("hf", "--repo", "org/tiny", "--dest", str(dest))

    assert second.code == 0, second.stderr
    assert second.result == first.result
    assert hub.seen == []
    assert hub.total_body_bytes() == 0
    print(f"\nbody bytes: first run {first_bytes}, second run {hub.total_body_bytes()}")


def test_a_dropped_connection_is_resumed_with_range_and_the_file_is_exact(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    # huggingface_hub writes in 10 MiB chunks and resumes from the last whole one.
    files = llama_like()
    shard = "model-00001-of-00002.safetensors"
    files[shard] = blob("big", 12 * MiB + 17)
    hub.repos["org/tiny"] = Repo.single(files)
    cut = 11 * MiB + 3
    hub.faults[shard] = Fault(drop_after=cut)
    dest = tmp_path / "k"

    run = fetch("hf", "--repo", "org/tiny", "--dest", str(dest))

    assert run.code == 0, run.stderr
    assert (dest / shard).read_bytes() == files[shard]
    gets = hub.content_gets(shard)
    assert [g.range for g in gets] == [None, f"bytes={10 * MiB}-"]
    # The bytes after the resume point travelled once more, not the whole file.
    assert hub.body_bytes[shard] == len(files[shard]) + (cut - 10 * MiB)
    assert not list(dest.rglob("*.incomplete"))


def test_a_size_different_from_the_hubs_is_refused_without_a_marker(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    files = llama_like()
    hub.repos["org/tiny"] = Repo.single(files)
    shard = "model-00002-of-00002.safetensors"
    hub.faults[shard] = Fault(announce=len(files[shard]) + 100)
    dest = tmp_path / "k"

    run = fetch("hf", "--repo", "org/tiny", "--dest", str(dest))

    assert run.code == 2, run.stderr
    assert "size mismatch" in run.log
    assert shard in run.log
    assert "\n" not in run.log.strip()
    assert not (dest / ".ballast-complete").exists()
    assert not (dest / shard).exists()


def test_a_gated_repository_fails_permanently_and_never_shows_the_token(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    repo = Repo.single(llama_like())
    repo.gated = True
    hub.repos["meta/gated"] = repo
    dest = tmp_path / "k"

    run = fetch("hf", "--repo", "meta/gated", "--dest", str(dest), token=TOKEN)

    assert run.code == 2, run.stderr
    assert "gated" in run.log
    for text in (run.stdout, run.stderr, run.log):
        assert TOKEN not in text
    assert not (dest / ".ballast-complete").exists()
    # The token was sent to the hub (and only there).
    assert {s.authorization for s in hub.seen} == {f"Bearer {TOKEN}"}


def test_a_private_repository_without_the_right_token_is_a_permanent_failure(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    repo = Repo.single(llama_like())
    repo.token = "hf_theRightOne"
    hub.repos["org/private"] = repo
    dest = tmp_path / "k"

    wrong = fetch("hf", "--repo", "org/private", "--dest", str(dest), token=TOKEN)
    assert wrong.code == 2
    assert "not found or not accessible" in wrong.log
    assert "HTTP 401" in wrong.log
    assert TOKEN not in wrong.stderr + wrong.stdout + wrong.log
    assert not (dest / ".ballast-complete").exists()

    right = fetch("hf", "--repo", "org/private", "--dest", str(dest), token="hf_theRightOne")
    assert right.code == 0, right.stderr
    assert files_in(dest) == KEPT


def test_an_unknown_repository_or_revision_is_permanent(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    hub.repos["org/tiny"] = Repo.single(llama_like())
    missing = fetch("hf", "--repo", "org/nope", "--dest", str(tmp_path / "a"))
    assert missing.code == 2
    assert "org/nope" in missing.log
    revision = fetch("hf", "--repo", "org/tiny", "--revision", "v9", "--dest", str(tmp_path / "b"))
    assert revision.code == 2
    assert revision.log.strip() == "revision v9 not found in org/tiny"


def test_a_pinned_commit_is_fetched_and_recorded_as_asked(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    old, new = commit_id("old"), commit_id("new")
    hub.repos["org/tiny"] = Repo(
        commits={old: {"config.json": b"old"}, new: {"config.json": b"new"}}, refs={"main": new}
    )
    dest = tmp_path / "k"
    run = fetch("hf", "--repo", "org/tiny", "--revision", old, "--dest", str(dest))
    assert run.code == 0, run.stderr
    assert (dest / "config.json").read_bytes() == b"old"
    assert run.result["revision"] == old
    assert (marker(dest)["requested"], marker(dest)["revision"]) == (old, old)


def test_a_retry_after_a_transient_error_keeps_the_commit_resolved_first(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    old, new = commit_id("old"), commit_id("new")
    repo = Repo(
        commits={
            old: {"config.json": b"old", "tokenizer.json": b"tok-old"},
            new: {"config.json": b"new", "tokenizer.json": b"tok-new"},
        },
        refs={"main": old},
    )
    hub.repos["org/tiny"] = repo

    def move_main() -> None:
        repo.refs["main"] = new

    hub.faults["tokenizer.json"] = Fault(get_status_once=500, then=move_main)
    dest = tmp_path / "k"

    run = fetch("hf", "--repo", "org/tiny", "--dest", str(dest))

    assert run.code == 0, run.stderr
    assert "HTTP 500" in run.stderr
    assert run.result["revision"] == old
    assert (dest / "tokenizer.json").read_bytes() == b"tok-old"
    assert (dest / "config.json").read_bytes() == b"old"
    assert [s.path for s in hub.seen if s.path.startswith("/api/")] == [
        "/api/models/org/tiny/revision/main"
    ]
    # The file that had arrived was not fetched again.
    assert len(hub.content_gets("/config.json")) == 1


def test_a_hub_error_5xx_is_transient(hub: FakeHub, fetch: Any, tmp_path: Path) -> None:
    hub.repos["org/tiny"] = Repo.single(llama_like())
    hub.api_status = 503
    run = fetch("hf", "--repo", "org/tiny", "--dest", str(tmp_path / "k"))
    assert run.code == 1
    assert "HTTP 503" in run.log
    assert not (tmp_path / "k" / ".ballast-complete").exists()


def test_a_rerun_after_a_failure_fetches_only_what_is_missing(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    files = llama_like()
    hub.repos["org/tiny"] = Repo.single(files)
    hub.faults["tokenizer.json"] = Fault(status=403)
    dest = tmp_path / "k"

    failed = fetch("hf", "--repo", "org/tiny", "--dest", str(dest))
    assert failed.code == 2
    assert not (dest / ".ballast-complete").exists()

    del hub.faults["tokenizer.json"]
    again = fetch("hf", "--repo", "org/tiny", "--dest", str(dest))
    assert again.code == 0, again.stderr
    assert files_in(dest) == KEPT
    for name in KEPT:
        assert len(list(hub.content_gets("/" + name))) == 1, name


GGUF_REPO = {
    "README.md": b"# quants",
    "tiny-Q4_K_M.gguf": blob("q4km", 5000),
    "tiny-Q4_K_S.gguf": blob("q4ks", 4000),
    "tiny-Q4_K.gguf": blob("q4k", 4500),
    "tiny-Q8_0.gguf": blob("q8", 9000),
    "mmproj-tiny-Q4_K_M.gguf": blob("mm", 100),
    "big/tiny-Q6_K-00001-of-00002.gguf": blob("s1", 100),
    "big/tiny-Q6_K-00002-of-00002.gguf": blob("s2", 100),
}


def test_gguf_quant_picks_one_file_case_insensitively_and_links_model_gguf(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    hub.repos["org/tiny-GGUF"] = Repo.single(GGUF_REPO)
    dest = tmp_path / "k"

    run = fetch("hf", "--repo", "org/tiny-GGUF", "--gguf", "q4_k_m", "--dest", str(dest))

    assert run.code == 0, run.stderr
    assert files_in(dest) == {"tiny-Q4_K_M.gguf", "model.gguf"}
    link = dest / "model.gguf"
    assert link.is_symlink()
    assert os.readlink(link) == "tiny-Q4_K_M.gguf"
    assert link.read_bytes() == GGUF_REPO["tiny-Q4_K_M.gguf"]
    assert run.result["files"] == 1
    assert run.result["bytes"] == 5000
    assert marker(dest)["gguf"] == "q4_k_m"
    # The whole word wins over longer quant names that contain it.
    other = tmp_path / "k2"
    assert fetch("hf", "--repo", "org/tiny-GGUF", "--gguf", "Q4_K", "--dest", str(other)).code == 0
    assert os.readlink(other / "model.gguf") == "tiny-Q4_K.gguf"


def test_gguf_without_a_single_match_or_split_is_refused_with_the_files_listed(
    hub: FakeHub, fetch: Any, tmp_path: Path
) -> None:
    hub.repos["org/tiny-GGUF"] = Repo.single(GGUF_REPO)
    none = fetch("hf", "--repo", "org/tiny-GGUF", "--gguf", "IQ2_XS", "--dest", str(tmp_path / "a"))
    assert none.code == 2
    assert "no GGUF file matches quant IQ2_XS" in none.log
    assert "tiny-Q8_0.gguf" in none.log
    assert "mmproj" not in none.log
    several = fetch("hf", "--repo", "org/tiny-GGUF", "--gguf", "Q4", "--dest", str(tmp_path / "b"))
    assert several.code == 2
    assert "several GGUF files match quant Q4" in several.log
    split = fetch("hf", "--repo", "org/tiny-GGUF", "--gguf", "Q6_K", "--dest", str(tmp_path / "c"))
    assert split.code == 2
    assert "split" in split.log
    assert hub.content_gets() == []
    for d in ("a", "b", "c"):
        assert not (tmp_path / d / ".ballast-complete").exists()


def test_bad_arguments_exit_2(fetch: Any, tmp_path: Path) -> None:
    run = fetch("hf", "--repo", "not a repo", "--dest", str(tmp_path / "k"))
    assert run.code == 2
    assert "not a Hugging Face repository id" in run.log
    usage = fetch("hf", "--dest", str(tmp_path / "k"))
    assert usage.code == 2

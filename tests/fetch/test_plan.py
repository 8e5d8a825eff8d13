"""The pure parts of `ballast fetch`: which files a repository's cache gets, and the marker."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ballast.fetch.choose import ChoiceError, RepoFile, engine_files, gguf_file
from ballast.fetch.outcome import Request, Result, completed, mark_complete, one_line


def repo(*paths: str) -> list[RepoFile]:
    return [RepoFile(path=p, size=1) for p in paths]


def names(files: list[RepoFile]) -> list[str]:
    return [f.path for f in files]


def test_safetensors_repositories_skip_every_duplicate_weight_format() -> None:
    files = repo(
        "config.json",
        "tokenizer.model",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "consolidated.safetensors",
        "pytorch_model-00001-of-00002.bin",
        "original/consolidated.00.pth",
        "original/tokenizer.model",
        "model.Q4_K_M.gguf",
        "flax_model.msgpack",
        "tf_model.h5",
        "onnx/model.onnx",
    )
    assert names(engine_files(files)) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "tokenizer.model",
    ]


def test_mistral_style_consolidated_safetensors_alone_is_kept() -> None:
    files = repo("params.json", "consolidated.safetensors", "tokenizer.model.v3")
    assert names(engine_files(files)) == [
        "consolidated.safetensors",
        "params.json",
        "tokenizer.model.v3",
    ]


def test_pytorch_only_repositories_keep_their_bin_weights() -> None:
    files = repo("config.json", "pytorch_model.bin", "tf_model.h5", "vocab.txt")
    assert names(engine_files(files)) == ["config.json", "pytorch_model.bin", "vocab.txt"]


@pytest.mark.parametrize(
    ("quant", "chosen"),
    [
        ("Q4_K_M", "m-Q4_K_M.gguf"),
        ("q4_k_m", "m-Q4_K_M.gguf"),
        ("Q4_K", "m-Q4_K.gguf"),
        ("Q8_0", "sub/m.Q8_0.gguf"),
        ("F16", "m-f16.gguf"),
    ],
)
def test_gguf_choice(quant: str, chosen: str) -> None:
    files = repo(
        "m-Q4_K_M.gguf",
        "m-Q4_K_S.gguf",
        "m-Q4_K.gguf",
        "sub/m.Q8_0.gguf",
        "m-f16.gguf",
        "mmproj-m-f16.gguf",
        "README.md",
    )
    assert gguf_file(files, quant).path == chosen


def test_gguf_choice_errors_name_the_files() -> None:
    files = repo("m-Q4_K_M.gguf", "m-Q4_K_S.gguf", "mmproj-m-f16.gguf")
    with pytest.raises(ChoiceError, match=r"no GGUF file matches quant Q8_0; .*m-Q4_K_M\.gguf"):
        gguf_file(files, "Q8_0")
    with pytest.raises(ChoiceError, match=r"several GGUF files match quant Q4_K_"):
        gguf_file(files, "Q4_K_")
    split = repo("m-Q6_K-00001-of-00002.gguf", "m-Q6_K-00002-of-00002.gguf")
    with pytest.raises(ChoiceError, match="split"):
        gguf_file(split, "Q6_K")
    # A single-file copy beside the split one is chosen.
    assert gguf_file([*split, *repo("m-Q6_K.gguf")], "Q6_K").path == "m-Q6_K.gguf"


def test_one_line_hides_secrets_and_stays_under_a_kibibyte() -> None:
    text = one_line("bad token hf_abcdef\nsecond line " + "x" * 2000, ("hf_abcdef",))
    assert "hf_abcdef" not in text
    assert "\n" not in text
    assert len(text.encode()) <= 1024
    assert text.startswith("bad token *** second line")


def test_the_marker_matches_only_the_same_request(tmp_path: Path) -> None:
    asked = Request(source="hf", dest=tmp_path, repo="o/r", revision="main", gguf=None)
    mark_complete(asked, Result("a" * 40, 3, 99), now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    marker = json.loads((tmp_path / ".ballast-complete").read_text())
    assert marker == {
        "source": "hf",
        "repo": "o/r",
        "requested": "main",
        "gguf": None,
        "revision": "a" * 40,
        "files": 3,
        "bytes": 99,
        "completedAt": "2026-01-02T03:04:05Z",
    }
    assert completed(asked) == Result("a" * 40, 3, 99)
    for other in (
        Request(source="hf", dest=tmp_path, repo="o/r", revision="v2"),
        Request(source="hf", dest=tmp_path, repo="o/r", revision="main", gguf="Q4_K_M"),
        Request(source="hf", dest=tmp_path, repo="o/other", revision="main"),
        Request(source="url", dest=tmp_path, url="http://x/m.gguf"),
    ):
        assert completed(other) is None
    assert [p.name for p in tmp_path.iterdir()] == [".ballast-complete"]


def test_other_commands_never_import_huggingface_hub() -> None:
    code = (
        "import sys, ballast.cli; ballast.cli.build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith(('huggingface_hub', 'httpx2'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

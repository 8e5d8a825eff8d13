"""Which files of a Hugging Face repository the cache needs: a pure plan, no I/O.

Without a GGUF quant the engine is vLLM or TGI: it loads safetensors when the repository
has them, so every other copy of the weights (PyTorch ``*.bin``/``*.pt``/``*.pth``, GGUF,
Meta's ``original/`` checkpoint, Mistral's ``consolidated*.safetensors`` beside the
Hugging Face shards, ONNX/TF/Flax/Core ML exports) is skipped; configs, tokenizers and
everything else small are kept. With a quant (llama.cpp's ``owner/repo:quant``) exactly
one GGUF file is chosen, or the choice fails with the files there are.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Never useful to a vLLM/TGI/llama.cpp server: other frameworks' exports.
ALWAYS_SKIPPED: tuple[str, ...] = (
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.onnx",
    "*.onnx_data",
    "*.onnx.data",
    "*.tflite",
    "*.mlmodel",
    "*.mlpackage/*",
    "onnx/*",
    "openvino/*",
    "coreml/*",
    "flax_model*",
    "tf_model*",
    "rust_model*",
)

#: Duplicate weight formats, skipped when the repository has ``*.safetensors``.
DUPLICATES_OF_SAFETENSORS: tuple[str, ...] = (
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.pkl",
    "*.gguf",
    "*.ggml",
    "original/*",
)

SPLIT_GGUF = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)


class ChoiceError(ValueError):
    """The repository has no file (or no single file) that fits the request."""


@dataclass(frozen=True)
class RepoFile:
    """One file of a repository at a commit: its path and size (``None`` if the hub gave none)."""

    path: str
    size: int | None


def _matches(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _is_consolidated(path: str) -> bool:
    base = path.rsplit("/", 1)[-1]
    return base.startswith("consolidated") and base.endswith(".safetensors")


def engine_files(files: Sequence[RepoFile]) -> list[RepoFile]:
    """The files a vLLM/TGI server needs, in path order (see the module docstring)."""
    skipped = list(ALWAYS_SKIPPED)
    safetensors = [f for f in files if f.path.endswith(".safetensors")]
    if safetensors:
        skipped.extend(DUPLICATES_OF_SAFETENSORS)
    hf_shards = [f for f in safetensors if not _is_consolidated(f.path)]
    keep = [
        f
        for f in files
        if not _matches(f.path, skipped) and not (hf_shards and _is_consolidated(f.path))
    ]
    return sorted(keep, key=lambda f: f.path)


def _whole_token(quant: str, path: str) -> bool:
    """``quant`` in ``path`` not as part of a longer quant name (``Q4_K`` is not ``Q4_K_M``)."""
    pattern = r"(?<![A-Za-z0-9_])" + re.escape(quant) + r"(?![A-Za-z0-9_])"
    return re.search(pattern, path, re.IGNORECASE) is not None


def gguf_file(files: Sequence[RepoFile], quant: str) -> RepoFile:
    """The one GGUF file whose name contains ``quant`` (case-insensitive).

    Vision projectors (``mmproj*``) are never the model. When several names contain the
    quant, the one naming it as a whole word wins (``Q4_K`` picks ``-Q4_K.gguf`` over
    ``-Q4_K_M.gguf``). Split GGUFs (``-00001-of-00003.gguf``) are refused: llama.cpp
    loads them from the first part, which this cache does not lay out yet.
    """
    ggufs = sorted(
        (
            f
            for f in files
            if f.path.lower().endswith(".gguf")
            and not f.path.rsplit("/", 1)[-1].lower().startswith("mmproj")
        ),
        key=lambda f: f.path,
    )
    available = ", ".join(f.path for f in ggufs) or "none"
    if not quant.strip():
        raise ChoiceError(f"empty GGUF quant; GGUF files in the repository: {available}")
    candidates = [f for f in ggufs if quant.lower() in f.path.lower()]
    if len(candidates) > 1:
        whole = [f for f in candidates if _whole_token(quant, f.path)]
        candidates = whole or candidates
    split = [f for f in candidates if SPLIT_GGUF.search(f.path)]
    if split and len(split) < len(candidates):
        candidates = [f for f in candidates if f not in split]
    elif split:
        raise ChoiceError(
            f"the GGUF for quant {quant} is split into parts ({', '.join(f.path for f in split)}); "
            "split GGUF files are not supported by the cache: choose a quant shipped as one file"
        )
    if not candidates:
        raise ChoiceError(
            f"no GGUF file matches quant {quant}; GGUF files in the repository: {available}"
        )
    if len(candidates) > 1:
        names = ", ".join(f.path for f in candidates)
        raise ChoiceError(
            f"several GGUF files match quant {quant}: {names}; give a more specific quant"
        )
    return candidates[0]

"""Engine command lines: how model, served model name and user args become arguments."""

from __future__ import annotations

import pytest

from ballast.api import Engine
from ballast.engines import info, launch, llamacpp, ollama
from ballast.routing import table_for
from tests.factories import SELF_HOSTED, backend, make_llmservice


def test_vllm_serves_the_model_under_the_served_model_name_then_user_args() -> None:
    run = launch(Engine.VLLM, "org/model", "chat-model", ("--max-model-len", "8192"))
    args = list(run.args)
    assert args[args.index("--model") + 1] == "org/model"
    assert args[args.index("--served-model-name") + 1] == "chat-model"
    assert args[args.index("--port") + 1] == "8000"
    assert args[-2:] == ["--max-model-len", "8192"]


def test_tgi_loads_the_model_id_and_user_args_come_last() -> None:
    args = list(launch(Engine.TGI, "org/model", "ignored", ("--max-input-tokens", "4096")).args)
    assert args[args.index("--model-id") + 1] == "org/model"
    assert args[args.index("--port") + 1] == "8080"
    assert "ignored" not in args
    assert args[-2:] == ["--max-input-tokens", "4096"]


@pytest.mark.parametrize(
    ("model", "flag"),
    [
        ("bartowski/Phi-3.5-mini-instruct-GGUF:Q4_K_M", "--hf-repo"),
        ("Qwen/Qwen2.5-7B-Instruct-GGUF", "--hf-repo"),
        ("/models/phi.gguf", "--model"),
        ("./phi.gguf", "--model"),
        ("phi-3.5-Q4_K_M.GGUF", "--model"),
        ("https://example.com/phi.gguf", "--model-url"),
        ("HTTP://example.com/phi.gguf", "--model-url"),
    ],
)
def test_llamacpp_reads_a_repo_a_path_or_a_url(model: str, flag: str) -> None:
    assert llamacpp.model_flag(model) == flag
    args = list(launch(Engine.LLAMACPP, model, "phi", ()).args)
    assert args[args.index(flag) + 1] == model
    assert args[args.index("--alias") + 1] == "phi"
    assert "--metrics" in args


def test_ollama_pulls_the_model_in_an_init_step_before_serving() -> None:
    run = launch(Engine.OLLAMA, "qwen2.5:1.5b", "qwen", ())
    assert run.args == ("serve",)
    assert run.init is not None
    assert dict(run.init.env)[ollama.MODEL_ENV] == "qwen2.5:1.5b"
    script = run.init.command[-1]
    assert f'ollama pull "${ollama.MODEL_ENV}"' in script
    assert "qwen2.5" not in script  # the model never becomes shell text


def test_a_model_name_with_shell_characters_stays_an_argument() -> None:
    hostile = "x; rm -rf / #"
    run = launch(Engine.OLLAMA, hostile, "qwen", ())
    assert run.init is not None
    assert hostile not in run.init.command[-1]
    assert hostile in launch(Engine.VLLM, hostile, "m", ()).args


def test_external_engines_have_no_launch() -> None:
    with pytest.raises(ValueError, match="no pods"):
        launch(Engine.OPENAI, "gpt-4o-mini", "m", ())


@pytest.mark.parametrize("engine", SELF_HOSTED)
def test_the_served_name_on_the_command_line_matches_what_the_gateway_sends(engine: str) -> None:
    svc = make_llmservice(backend(engine), name="svc", servedModelName="public-name")
    upstream = table_for(svc, {}).backends[0].upstream_model
    args = launch(Engine(engine), svc.spec.backends[0].model, svc.served_model_name, ()).args
    if info(Engine(engine)).aliasable:
        assert upstream == "public-name"
        assert "public-name" in args
    else:
        assert upstream == svc.spec.backends[0].model

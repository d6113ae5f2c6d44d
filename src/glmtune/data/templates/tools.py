"""Tool use: tool descriptions and calls as datasets write them, and each model family's way of writing them."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Tools = str | list[dict[str, Any]] | None
ToolSpec = dict[str, Any]

CALL_SHAPE = '{"name": ..., "arguments": {...}}'


@dataclass(frozen=True)
class ToolSyntax:
    """How one model family lists its tools in the system prompt and writes a tool call.

    listing: tool specs (OpenAI form: {"type": "function", "function": {...}}) -> tools text.
    layout: the system messages to render, each a format of `{system}` and `{tools}`;
        empty ones are dropped (GLM-4 puts its tools in a system message of their own).
    call: one call, a template format (text, or a tuple of parts) with `{name}`,
        `{arguments}` (JSON) and `{kwargs}` (Python keywords).
    call_separator: between calls of one message; None where the model makes one call at a time.
    """

    listing: Callable[[list[ToolSpec]], str]
    layout: tuple[str, ...]
    call: str | tuple[str, ...]
    call_separator: str | None = None


def parse_tools(tools: Tools) -> list[ToolSpec]:
    """Tool descriptions (JSON text or a list) in OpenAI form, whichever form they came in."""
    if not tools:
        return []
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as error:
            raise ValueError(f"tools is not valid JSON: {error}") from None
    specs = [tools] if isinstance(tools, dict) else tools
    if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
        raise ValueError("tools must be a JSON list of function descriptions")
    return [spec if "function" in spec else {"type": "function", "function": spec} for spec in specs]


def parse_calls(content: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, arguments) of each tool call in a function message: {"name": ..., "arguments": {...}} or a list."""
    try:
        value = json.loads(content)
    except json.JSONDecodeError as error:
        raise ValueError(f"a function message must hold a tool call as JSON ({CALL_SHAPE}): {error}") from None
    return [one_call(call) for call in (value if isinstance(value, list) else [value])]


def one_call(call: Any) -> tuple[str, dict[str, Any]]:
    """Datasets write calls in several shapes: "arguments" or "parameters", as an object or JSON text, or OpenAI's."""
    call = call.get("function", call) if isinstance(call, dict) else call
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise ValueError(f"a tool call needs a name: expected {CALL_SHAPE}, got {call!r}")
    arguments = call.get("arguments", call.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as error:
            raise ValueError(f"tool call {call['name']!r}: arguments are not valid JSON: {error}") from None
    if not isinstance(arguments, dict):
        raise ValueError(f"tool call {call['name']!r}: arguments must be a JSON object, got {arguments!r}")
    return call["name"], arguments


def dump_json(value: Any, indent: int | None = None) -> str:
    """JSON as Hugging Face chat templates write it (their `tojson`): non-ASCII kept, ", " and ": " separators."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


def python_kwargs(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in arguments.items())


def qwen_tool_listing(tools: list[ToolSpec]) -> str:
    """Qwen2.5's chat_template: one JSON line per tool inside <tools></tools> (Hermes style)."""
    listing = "".join("\n" + dump_json(tool) for tool in tools)
    return (
        "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
        f"{listing}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def glm4_tool_listing(tools: list[ToolSpec]) -> str:
    """glm-4-9b-chat's chat_template as transformers renders it (trim_blocks eats one newline before each "##")."""
    listing = "".join(
        f"\n## {tool['function']['name']}\n\n{dump_json(tool['function'], indent=4)}\n"
        "在调用上述函数时，请使用 Json 格式表示调用的参数。"
        for tool in tools
    )
    return (
        "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 模型开发的，"
        f"你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具{listing}"
    )


def chatglm3_tool_listing(tools: list[ToolSpec]) -> str:
    """ChatGLM3's tool system prompt (its finetune demo and PROMPT.md): the function list as indented JSON."""
    functions = dump_json([tool["function"] for tool in tools], indent=4)
    return f"Answer the following questions as best as you can. You have access to the following tools:\n{functions}"


def llama3_tool_listing(tools: list[ToolSpec]) -> str:
    """Llama 3.1's chat_template with tools in the system message, at its default date."""
    listing = "".join(dump_json(tool, indent=4) + "\n\n" for tool in tools)
    return (
        "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        "You have access to the following functions. To call a function, please respond with JSON for a function call."
        'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.'
        f"Do not use variables.\n\n{listing}"
    )


QWEN_TOOLS = ToolSyntax(
    listing=qwen_tool_listing,
    layout=("{system}{tools}",),
    call='<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>',
    call_separator="\n",
)
GLM4_TOOLS = ToolSyntax(listing=glm4_tool_listing, layout=("{tools}", "{system}"), call="{name}\n{arguments}")
CHATGLM3_TOOLS = ToolSyntax(
    listing=chatglm3_tool_listing,
    layout=("{tools}", "{system}"),
    call=("{name}\n", "```python\ntool_call({kwargs})\n```"),
)
LLAMA3_TOOLS = ToolSyntax(
    listing=llama3_tool_listing,
    layout=("{tools}{system}",),
    call='{{"name": "{name}", "parameters": {arguments}}}',
)

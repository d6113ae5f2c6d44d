"""Tool use: tool descriptions and calls as datasets write them, and each model family's way of writing them.

Each family's syntax keeps, side by side, how its tools and calls are rendered (training,
prompts) and how a call is read back out of a model's reply (the API's `tool_calls`).
"""

import ast
import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

Tools = str | list[dict[str, Any]] | None
ToolSpec = dict[str, Any]

CALL_SHAPE = '{"name": ..., "arguments": {...}}'
ToolCall = tuple[str, dict[str, Any]]  # (function name, arguments)
NAME_MARK, ARGUMENTS_MARK = "\x00name\x00", "\x00arguments\x00"


@dataclass(frozen=True)
class ParsedReply:
    """A model's reply read with a tool syntax: its text outside the calls, and the calls."""

    content: str
    calls: list[ToolCall] = field(default_factory=list)


ReplyParser = Callable[[str, Collection[str]], ParsedReply]
SettledLength = Callable[[str, Collection[str]], int]


@dataclass(frozen=True)
class ToolSyntax:
    """How one model family lists its tools in the system prompt and writes a tool call.

    listing: tool specs (OpenAI form: {"type": "function", "function": {...}}) -> tools text.
    layout: the system messages to render, each a format of `{system}` and `{tools}`;
        empty ones are dropped (GLM-4 puts its tools in a system message of their own).
    call: one call, a template format (text, or a tuple of parts) with `{name}`,
        `{arguments}` (JSON) and `{kwargs}` (Python keywords).
    call_separator: between calls of one message; None where the model makes one call at a time.
    parse: a reply and the names of the tools offered -> its text and its calls; a reply
        whose call does not parse stays text (ParsedReply(reply)).
    settled: the length of a partial reply's start that stays text whatever follows, so a
        stream can send it before the reply is complete.
    """

    listing: Callable[[list[ToolSpec]], str]
    layout: tuple[str, ...]
    call: str | tuple[str, ...]
    parse: ReplyParser
    settled: SettledLength
    call_separator: str | None = None

    def opening(self, name: str | None = None) -> str | None:
        """How a reply that calls `name` (any tool: None) starts; None where a call has no fixed start.

        Forcing a call (the API's tool_choice "required" or a named function) starts the reply with it.
        """
        text = "".join((self.call,) if isinstance(self.call, str) else self.call)
        text = text.format(name=NAME_MARK, arguments=ARGUMENTS_MARK, kwargs=ARGUMENTS_MARK)
        if name is None:
            return text[: text.index(NAME_MARK)] or None
        return text[: text.index(ARGUMENTS_MARK)].replace(NAME_MARK, name)


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


def json_safe(calls: list[ToolCall]) -> list[ToolCall]:
    """The calls, if every argument value is plain JSON (no NaN, infinity, set or bytes); else ValueError."""
    for _, arguments in calls:
        try:
            json.dumps(arguments, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as error:
            raise ValueError(f"arguments are not plain JSON: {error}") from None
    return calls


def held_back(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is the start of `marker` (the marker may be arriving)."""
    return next((size for size in range(min(len(marker) - 1, len(text)), 0, -1) if marker.startswith(text[-size:])), 0)


QWEN_CALL_START = "<tool_call>"
QWEN_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)


def parse_qwen_reply(reply: str, names: Collection[str]) -> ParsedReply:
    """Qwen2.5 (Hermes style): text, then one or more <tool_call>{"name": ..., "arguments": {...}}</tool_call>."""
    start = reply.find(QWEN_CALL_START)
    if start < 0:
        return ParsedReply(reply)
    try:
        calls = json_safe([one_call(json.loads(match.group(1))) for match in QWEN_CALL.finditer(reply, start)])
    except (ValueError, RecursionError):
        return ParsedReply(reply)
    return ParsedReply(reply[:start].rstrip(), calls)


def settled_qwen_reply(reply: str, names: Collection[str]) -> int:
    """Text up to a <tool_call> (or a start of one arriving), less trailing blanks that may precede it."""
    start = reply.find(QWEN_CALL_START)
    end = start if start >= 0 else len(reply) - held_back(reply, QWEN_CALL_START)
    return len(reply[:end].rstrip())


def parse_llama3_reply(reply: str, names: Collection[str]) -> ParsedReply:
    """Llama 3.1: the whole reply is one call, {"name": ..., "parameters": {...}}, naming an offered tool."""
    body = reply.strip()
    if not body.startswith("{"):
        return ParsedReply(reply)
    try:
        calls = json_safe([one_call(json.loads(body))])
    except (ValueError, RecursionError):
        return ParsedReply(reply)
    return ParsedReply("", calls) if calls[0][0] in names else ParsedReply(reply)


def settled_llama3_reply(reply: str, names: Collection[str]) -> int:
    """A reply that starts (after blanks) with "{" may be a call until it ends."""
    body = reply.lstrip()
    return 0 if not body or body.startswith("{") else len(reply)


def split_name_line(reply: str, names: Collection[str]) -> tuple[str, str] | None:
    """GLM's calls start with the tool's name on a line of its own (a text answer starts with a newline)."""
    name, newline, rest = reply.partition("\n")
    return (name.strip(), rest) if newline and name.strip() in names else None


def settled_name_line_reply(reply: str, names: Collection[str]) -> int:
    """Held back while the first line is, or may become, an offered tool's name."""
    first, newline, _ = reply.partition("\n")
    first = first.strip()
    if newline:
        return 0 if first in names else len(reply)
    return 0 if any(name.startswith(first) for name in names) else len(reply)


def parse_glm4_reply(reply: str, names: Collection[str]) -> ParsedReply:
    """glm-4-9b-chat: the tool's name, a newline, then the arguments as a JSON object."""
    split = split_name_line(reply, names)
    if split is None:
        return ParsedReply(reply)
    try:
        arguments = json.loads(split[1])
        calls = json_safe([(split[0], arguments)])
    except (ValueError, RecursionError):
        return ParsedReply(reply)
    return ParsedReply("", calls) if isinstance(arguments, dict) else ParsedReply(reply)


CHATGLM3_CODE = re.compile(r"```(?:python)?\s*(.*?)\s*```", re.DOTALL)


def parse_chatglm3_reply(reply: str, names: Collection[str]) -> ParsedReply:
    """ChatGLM3: the tool's name, a newline, then a fenced Python line `tool_call(key=value, ...)` of literals.

    Read with `ast` and `literal_eval`, never run: ChatGLM3's own demo eval()s this line.
    """
    split = split_name_line(reply, names)
    if split is None:
        return ParsedReply(reply)
    fenced = CHATGLM3_CODE.search(split[1])
    code = (fenced.group(1) if fenced else split[1]).strip()
    try:
        call = ast.parse(code, mode="eval").body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "tool_call"):
            raise ValueError("not a tool_call(...) line")
        if call.args or any(keyword.arg is None for keyword in call.keywords):
            raise ValueError("tool_call takes keyword arguments only")
        arguments = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
        calls = json_safe([(split[0], arguments)])
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return ParsedReply(reply)
    return ParsedReply("", calls)


QWEN_TOOLS = ToolSyntax(
    listing=qwen_tool_listing,
    layout=("{system}{tools}",),
    call='<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>',
    parse=parse_qwen_reply,
    settled=settled_qwen_reply,
    call_separator="\n",
)
GLM4_TOOLS = ToolSyntax(
    listing=glm4_tool_listing,
    layout=("{tools}", "{system}"),
    call="{name}\n{arguments}",
    parse=parse_glm4_reply,
    settled=settled_name_line_reply,
)
CHATGLM3_TOOLS = ToolSyntax(
    listing=chatglm3_tool_listing,
    layout=("{tools}", "{system}"),
    call=("{name}\n", "```python\ntool_call({kwargs})\n```"),
    parse=parse_chatglm3_reply,
    settled=settled_name_line_reply,
)
LLAMA3_TOOLS = ToolSyntax(
    listing=llama3_tool_listing,
    layout=("{tools}{system}",),
    call='{{"name": "{name}", "parameters": {arguments}}}',
    parse=parse_llama3_reply,
    settled=settled_llama3_reply,
)

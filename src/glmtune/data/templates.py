"""Chat templates: how a conversation becomes text and token ids, turn by turn.

A template renders each (prompt, response) turn separately so that training can put loss
on responses only, and training and inference share the very same object.

Templates are declarative records. A format is a string, or a tuple of parts when the
model's own code encodes those parts one by one (ChatGLM3 encodes its role token, the
newline and the content separately). Formats take `{content}`, and may use `{system}`
(the rendered system prompt, first turn only, for models that put it inside the first
user turn), `{idx}` (1-based round number), `{bos}` and `{eos}` (the tokenizer's tokens).
Parts listed in `special_tokens`, and parts that are exactly `{bos}` or `{eos}`, are
inserted by token id, because some tokenizers (ChatGLM2/3, Baichuan) never read their
role tokens from text.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from glmtune.data.schema import Message
from glmtune.errors import ConfigError, did_you_mean

RenderedTurn = tuple[str, str]
EncodedTurn = tuple[list[int], list[int]]
Format = str | tuple[str, ...]
Tools = str | list[dict[str, Any]] | None
ToolSpec = dict[str, Any]

USER_SIDE = ("user", "observation")
ASSISTANT_SIDE = ("assistant", "function")
TOKEN_FIELDS = ("{bos}", "{eos}")
SPLICED = re.compile(r"(\{content\}|\{system\})")
CALL_SHAPE = '{"name": ..., "arguments": {...}}'

TEXT, PART, TOKEN = "text", "part", "token"


@dataclass(frozen=True)
class Piece:
    """A run of text for one tokenizer call.

    TEXT pieces join their TEXT neighbours (a string format is encoded as one text), PART
    pieces are encoded alone (a part of a tuple format), TOKEN pieces are one token id.
    """

    text: str
    kind: str = TEXT


TurnPieces = tuple[list[Piece], list[Piece]]


class ChatFormat(Protocol):
    name: str

    def render(
        self, tokenizer: Any, messages: list[Message], system: str | None = None, tools: Tools = None
    ) -> list[RenderedTurn]:
        """Return (prompt_text, response_text) per turn; the last response may be empty for generation."""
        ...

    def pieces(
        self, tokenizer: Any, messages: list[Message], system: str | None = None, tools: Tools = None
    ) -> list[TurnPieces]:
        """Return (prompt_pieces, response_pieces) per turn: the texts and tokens that encode_turns turns into ids."""
        ...

    def stop_words(self, tokenizer: Any) -> list[str]: ...


@dataclass(frozen=True)
class ToolSyntax:
    """How one model family lists its tools in the system prompt and writes a tool call.

    listing: tool specs (OpenAI form: {"type": "function", "function": {...}}) -> tools text.
    layout: the system messages to render, each a format of `{system}` and `{tools}`;
        empty ones are dropped (GLM-4 puts its tools in a system message of their own).
    call: one call, with `{name}`, `{arguments}` (JSON) and `{kwargs}` (Python keywords).
    call_separator: between calls of one message; None where the model makes one call at a time.
    """

    listing: Callable[[list[ToolSpec]], str]
    layout: tuple[str, ...]
    call: Format
    call_separator: str | None = None


@dataclass(frozen=True)
class Template:
    """A chat format written out declaratively, as its model documents it.

    separator: prompt-side text between an answer and the next turn (not trained on).
    end: response-side text after the conversation's last answer only, for models whose
        turns follow each other without eos but whose conversations end with one.
    observation / function: formats of tool results and tool calls; None where the
        model has no tool use, and then `tools` is None too.
    stops: words that end generation besides the tokenizer's eos.
    special_tokens: parts inserted by token id, for tokenizers that never read them from text.
    """

    name: str
    user: Format
    assistant: Format
    system: Format = "{content}"
    prefix: Format = ""
    separator: Format = ""
    end: Format = ""
    observation: Format | None = None
    function: Format | None = None
    tools: ToolSyntax | None = None
    default_system: str = ""
    stops: tuple[str, ...] = ()
    special_tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.function is None) != (self.tools is None):
            raise ValueError(f"template {self.name!r}: a function format and a tool syntax go together")

    def render(
        self, tokenizer: Any, messages: list[Message], system: str | None = None, tools: Tools = None
    ) -> list[RenderedTurn]:
        turns = self.pieces(tokenizer, messages, system, tools)
        return [(joined(prompt), joined(response)) for prompt, response in turns]

    def stop_words(self, tokenizer: Any) -> list[str]:
        return unique([*self.stops, tokenizer.eos_token or ""])

    def pieces(
        self, tokenizer: Any, messages: list[Message], system: str | None = None, tools: Tools = None
    ) -> list[TurnPieces]:
        """The one place a conversation is laid out: prefix and system, then turn after turn."""
        system_text, pairs = split_conversation(messages, system, self.default_system)
        fields = {"bos": tokenizer.bos_token or "", "eos": tokenizer.eos_token or ""}
        system_pieces = self.system_pieces(system_text, parse_tools(tools), fields)
        last = len(pairs) - 1
        return [
            (
                merged(self.prompt_pieces(index, query, system_pieces, fields)),
                merged(self.answer_pieces(answer, fields, index == last)),
            )
            for index, (query, answer) in enumerate(pairs)
        ]

    def prompt_pieces(
        self, index: int, query: Message, system_pieces: list[Piece], fields: dict[str, Any]
    ) -> list[Piece]:
        """Prefix and system before the first turn, the separator before later ones, then the user-side message."""
        fmt = self.role_format(query["role"])
        first = index == 0
        inline_system = any("{system}" in part for part in parts(self.user))
        lead = self.fill(self.prefix if first else self.separator, fields)
        if first and not inline_system:
            lead += system_pieces
        spliced = {"content": [Piece(query["content"])], "system": system_pieces if first else []}
        return lead + self.fill(fmt, {**fields, "idx": index + 1}, spliced)

    def answer_pieces(self, answer: Message | None, fields: dict[str, Any], last: bool) -> list[Piece]:
        """The assistant-side message, and `end` after the conversation's last one; nothing for a generation prompt."""
        if answer is None:
            return []
        fmt = self.role_format(answer["role"])
        is_call = answer["role"] == "function"
        content = self.call_pieces(answer["content"], fields) if is_call else [Piece(answer["content"])]
        return self.fill(fmt, fields, {"content": content}) + (self.fill(self.end, fields) if last else [])

    def system_pieces(self, system_text: str, tools: list[ToolSpec], fields: dict[str, Any]) -> list[Piece]:
        """The system messages: the system prompt, and the tool list where the model's layout puts it."""
        if tools and self.tools is None:
            raise ConfigError(f"template {self.name!r} does not support tools; {TOOL_TEMPLATES_HINT}")
        contents = [system_text]
        if tools:
            listing = self.tools.listing(tools)
            contents = [layout.format(system=system_text, tools=listing) for layout in self.tools.layout]
        return [
            piece
            for content in contents
            if content
            for piece in self.fill(self.system, fields, {"content": [Piece(content)]})
        ]

    def call_pieces(self, content: str, fields: dict[str, Any]) -> list[Piece]:
        calls = parse_calls(content)
        if len(calls) > 1 and self.tools.call_separator is None:
            raise ValueError(f"template {self.name!r} makes one tool call per function message, got {len(calls)}")
        pieces: list[Piece] = []
        for index, (name, arguments) in enumerate(calls):
            if index:
                pieces.append(Piece(self.tools.call_separator))
            arguments_text = {"arguments": dump_json(arguments), "kwargs": python_kwargs(arguments)}
            pieces += self.fill(self.tools.call, {**fields, "name": name, **arguments_text})
        return pieces

    def role_format(self, role: str) -> Format:
        fmt = {
            "user": self.user,
            "assistant": self.assistant,
            "observation": self.observation,
            "function": self.function,
        }[role]
        if fmt is None:  # the data needs another template, so this is a config error, not a bad row
            raise ConfigError(f"template {self.name!r} has no {role!r} role (tool use); {TOOL_TEMPLATES_HINT}")
        return fmt

    def fill(self, fmt: Format, fields: dict[str, Any], spliced: dict[str, list[Piece]] | None = None) -> list[Piece]:
        """Expand a format into pieces; content is spliced in as pieces, so it is never formatted or read as a token."""
        kind = TEXT if isinstance(fmt, str) else PART
        pieces: list[Piece] = []
        for part in parts(fmt):
            if part in self.special_tokens or part in TOKEN_FIELDS:
                pieces.append(Piece(part.format(**fields), TOKEN))
                continue
            for chunk in SPLICED.split(part):
                if chunk in ("{content}", "{system}"):
                    pieces += (spliced or {}).get(chunk[1:-1], [])
                else:
                    pieces.append(Piece(chunk.format(**fields), kind))
        return pieces


@dataclass(frozen=True)
class TokenizerChatTemplate:
    """The tokenizer's own Jinja chat_template, split into turns by rendering growing prefixes."""

    name: str = "default"

    def render(
        self, tokenizer: Any, messages: list[Message], system: str | None = None, tools: Tools = None
    ) -> list[RenderedTurn]:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                f"template=default but this tokenizer has no chat_template: choose one of {', '.join(TEMPLATES)}"
            )
        system_text, pairs = split_conversation(messages, system, "")
        tool_specs = parse_tools(tools) or None
        history: list[dict[str, Any]] = [{"role": "system", "content": system_text}] if system_text else []
        turns, rendered = [], ""
        for query, answer in pairs:
            history.append(hf_message(query))
            with_prompt = self.apply(tokenizer, history, True, tool_specs)
            response = ""
            if answer is not None:
                history.append(hf_message(answer))
                response = strip_prefix(self.apply(tokenizer, history, False, tool_specs), with_prompt)
            turns.append((strip_prefix(with_prompt, rendered), response))
            rendered = with_prompt + response
        return turns

    def pieces(
        self, tokenizer: Any, messages: list[Message], system: str | None = None, tools: Tools = None
    ) -> list[TurnPieces]:
        return [
            (merged([Piece(prompt)]), merged([Piece(response)]))
            for prompt, response in self.render(tokenizer, messages, system, tools)
        ]

    @staticmethod
    def apply(
        tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool, tools: list[ToolSpec] | None
    ) -> str:
        return tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def stop_words(self, tokenizer: Any) -> list[str]:
        return unique([tokenizer.eos_token or ""])


def strip_prefix(text: str, prefix: str) -> str:
    if not text.startswith(prefix):
        raise ConfigError(
            "the tokenizer's chat_template renders earlier turns differently once later turns are added, "
            f"so turns cannot be masked exactly: choose a named template ({', '.join(TEMPLATES)})"
        )
    return text[len(prefix) :]


def hf_message(message: Message) -> dict[str, Any]:
    """The role names and tool-call shape that Hugging Face chat templates expect."""
    if message["role"] == "observation":
        return {"role": "tool", "content": message["content"]}
    if message["role"] == "function":
        calls = [
            {"type": "function", "function": {"name": name, "arguments": arguments}}
            for name, arguments in parse_calls(message["content"])
        ]
        return {"role": "assistant", "content": "", "tool_calls": calls}
    return {"role": message["role"], "content": message["content"]}


def split_conversation(
    messages: list[Message], system: str | None, default_system: str
) -> tuple[str, list[tuple[Message, Message | None]]]:
    """Check role order and pair each user-side message with the assistant-side message answering it.

    User-side roles (user, observation) take even positions and assistant-side roles
    (assistant, function) odd ones, counted after a leading system message. A conversation
    that ends on the user side gets `None` as its last answer: that is a prompt for generation.
    """
    offset = 0
    if messages and messages[0].get("role") == "system":
        system = messages[0]["content"] if system is None else system
        messages, offset = messages[1:], 1
    pairs: list[tuple[Message, Message | None]] = []
    for index, message in enumerate(messages):
        expected = USER_SIDE if index % 2 == 0 else ASSISTANT_SIDE
        if message.get("role") not in expected:
            roles = " or ".join(map(repr, expected))
            raise ValueError(f"message {index + offset}: expected role {roles}, got {message.get('role')!r}")
        if index % 2 == 0:
            pairs.append((message, None))
        else:
            pairs[-1] = (pairs[-1][0], message)
    if not pairs:
        raise ValueError("the conversation has no user message")
    return (default_system if system is None else system), pairs


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


def parts(fmt: Format) -> tuple[str, ...]:
    return (fmt,) if isinstance(fmt, str) else fmt


def merged(pieces: list[Piece]) -> list[Piece]:
    """Drop empty pieces and join neighbouring TEXT pieces, so a string format is encoded as one text."""
    out: list[Piece] = []
    for piece in pieces:
        if not piece.text:
            continue
        if out and piece.kind == TEXT and out[-1].kind == TEXT:
            out[-1] = Piece(out[-1].text + piece.text)
        else:
            out.append(piece)
    return out


def joined(pieces: list[Piece]) -> str:
    return "".join(piece.text for piece in pieces)


def token_id(tokenizer: Any, piece: Piece, known: dict[str, int | None]) -> int | None:
    """A TOKEN piece's vocabulary id (looked up once per text in `known`); None for a piece read as text.

    A tokenizer that lacks the token reads it as text.
    """
    if piece.kind != TOKEN:
        return None
    if piece.text not in known:
        found = tokenizer.convert_tokens_to_ids(piece.text)
        known[piece.text] = None if found is None or found == tokenizer.unk_token_id else found
    return known[piece.text]


def unique(words: list[str]) -> list[str]:
    return list(dict.fromkeys(word for word in words if word))


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

CHATML = {
    "user": "<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
    "assistant": "{content}<|im_end|>\n",
    "system": "<|im_start|>system\n{content}<|im_end|>\n",
    "stops": ("<|im_end|>",),
}
QWEN_TOOL_ROLES = {
    "observation": "<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
    "function": "{content}<|im_end|>\n",
    "tools": QWEN_TOOLS,
}
GLM_STOPS = ("<|user|>", "<|observation|>")
LLAMA3_HEADER = "<|start_header_id|>{role}<|end_header_id|>\n\n"


def llama3_turn(role: str, then: str = "") -> str:
    return LLAMA3_HEADER.format(role=role) + "{content}<|eot_id|>" + then


def registry(*templates: ChatFormat) -> dict[str, ChatFormat]:
    return {template.name: template for template in templates}


TEMPLATES: dict[str, ChatFormat] = registry(
    TokenizerChatTemplate(),
    Template(name="empty", user="{content}", assistant="{content}{eos}"),
    Template(
        name="chatglm2",
        prefix=("[gMASK]", "sop"),
        user="[Round {idx}]\n\n问：{content}\n\n答：",
        assistant="{content}",
        separator="\n\n",
        end="{eos}",
        special_tokens=("[gMASK]", "sop"),
    ),
    Template(
        name="chatglm3",
        prefix=("[gMASK]", "sop"),
        system=("<|system|>", "\n", "{content}"),
        user=("<|user|>", "\n", "{content}", "<|assistant|>"),
        assistant=("\n", "{content}"),
        observation=("<|observation|>", "\n", "{content}", "<|assistant|>"),
        function="{content}",
        tools=CHATGLM3_TOOLS,
        end="{eos}",
        stops=GLM_STOPS,
        special_tokens=("[gMASK]", "sop", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"),
    ),
    Template(
        name="glm4",
        prefix="[gMASK]<sop>",
        system="<|system|>\n{content}",
        user="<|user|>\n{content}<|assistant|>",
        assistant="\n{content}",
        observation="<|observation|>\n{content}<|assistant|>",
        function="{content}",
        tools=GLM4_TOOLS,
        end="{eos}",
        stops=GLM_STOPS,
    ),
    Template(
        name="baichuan",
        user=("<reserved_102>", "{content}", "<reserved_103>"),
        assistant="{content}",
        end="{eos}",
        stops=("<reserved_102>",),
        special_tokens=("<reserved_102>", "<reserved_103>"),
    ),
    Template(
        name="baichuan2",
        user=("<reserved_106>", "{content}", "<reserved_107>"),
        assistant="{content}",
        end="{eos}",
        stops=("<reserved_106>",),
        special_tokens=("<reserved_106>", "<reserved_107>"),
    ),
    Template(
        name="llama2",
        system="<<SYS>>\n{content}\n<</SYS>>\n\n",
        user="{bos}[INST] {system}{content} [/INST]",
        assistant=" {content} {eos}",
    ),
    Template(
        name="llama3",
        prefix="{bos}",
        system=llama3_turn("system"),
        user=llama3_turn("user", then=LLAMA3_HEADER.format(role="assistant")),
        assistant="{content}<|eot_id|>",
        observation=llama3_turn("ipython", then=LLAMA3_HEADER.format(role="assistant")),
        function="{content}<|eot_id|>",
        tools=LLAMA3_TOOLS,
        stops=("<|eot_id|>", "<|eom_id|>"),
    ),
    Template(name="qwen", default_system="You are a helpful assistant.", **CHATML, **QWEN_TOOL_ROLES),
    Template(
        name="qwen2.5",
        default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        **CHATML,
        **QWEN_TOOL_ROLES,
    ),
    Template(
        name="smollm2",
        default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        **CHATML,
    ),
    Template(name="chatml", **CHATML),
    Template(name="yi", **CHATML),
    Template(
        name="alpaca",
        system="{content}\n\n",
        user="### Instruction:\n{content}\n\n### Response:",
        assistant="{content}{eos}",
        separator="\n\n",
        default_system=(
            "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        ),
    ),
    Template(
        name="vicuna",
        system="{content} ",
        user="USER: {content} ASSISTANT:",
        assistant=" {content}{eos}",
        default_system=(
            "A chat between a curious user and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed, and polite answers to the user's questions."
        ),
    ),
    Template(
        name="deepseek",
        prefix="{bos}",
        system="{content}\n\n",
        user="User: {content}\n\nAssistant:",
        assistant=" {content}{eos}",
    ),
    Template(
        name="gemma",
        prefix="{bos}",
        system="{content}\n\n",
        user="<start_of_turn>user\n{system}{content}<end_of_turn>\n<start_of_turn>model\n",
        assistant="{content}<end_of_turn>\n",
        stops=("<end_of_turn>",),
    ),
)

TOOL_TEMPLATES_HINT = "templates with tool use: " + ", ".join(
    name for name, template in TEMPLATES.items() if isinstance(template, Template) and template.tools
)


def get_template(name: str) -> ChatFormat:
    if name not in TEMPLATES:
        raise ConfigError(f"unknown template {name!r}{did_you_mean(name, TEMPLATES)}; known: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[name]


def encode_turns(
    template: ChatFormat, tokenizer: Any, messages: list[Message], system: str | None = None, tools: Tools = None
) -> list[EncodedTurn]:
    """Token ids per turn: [(prompt_ids, response_ids), ...], the unit on which loss masks are built."""
    return encode_pieces(tokenizer, [template.pieces(tokenizer, messages, system, tools)])[0]


def encode_pieces(tokenizer: Any, conversations: list[list[TurnPieces]]) -> list[list[EncodedTurn]]:
    """Ids of many laid-out conversations, with all their texts tokenized in one call.

    One call over a list lets a fast tokenizer work in Rust (and in parallel) instead of
    paying Python overhead per piece; each text is still encoded on its own, so the ids
    are exactly those of encoding piece by piece.
    """
    known: dict[str, int | None] = {}
    texts = [
        piece.text
        for turns in conversations
        for turn in turns
        for side in turn
        for piece in side
        if token_id(tokenizer, piece, known) is None
    ]
    encoded = iter(
        tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"] if texts else []
    )

    def ids(side: list[Piece]) -> list[int]:
        out: list[int] = []
        for piece in side:
            token = token_id(tokenizer, piece, known)
            out += next(encoded) if token is None else [token]
        return out

    return [[(ids(prompt), ids(response)) for prompt, response in turns] for turns in conversations]


def encode_prompt(
    template: ChatFormat, tokenizer: Any, messages: list[Message], system: str | None = None, tools: Tools = None
) -> list[int]:
    """Ids of a conversation ending on a user-side turn, ready for the model to answer."""
    if messages and messages[-1].get("role") not in USER_SIDE:
        raise ValueError("a prompt for generation must end with a user or observation message")
    turns = encode_turns(template, tokenizer, messages, system, tools)
    return [token for prompt, response in turns for token in prompt + response]

"""How a conversation is laid out, turn by turn, into the texts and tokens its model was trained on.

A template lays out each (prompt, response) turn separately so that training can put loss
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

import re
from dataclasses import dataclass
from typing import Any, Protocol

from glmtune.data.schema import Message, misplaced_role
from glmtune.data.templates.tools import (
    Tools,
    ToolSpec,
    ToolSyntax,
    dump_json,
    parse_calls,
    parse_tools,
    python_kwargs,
)
from glmtune.errors import ConfigError

RenderedTurn = tuple[str, str]
Format = str | tuple[str, ...]

TOKEN_FIELDS = ("{bos}", "{eos}")
SPLICED = re.compile(r"(\{content\}|\{system\})")

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
            raise ConfigError(f"template {self.name!r} does not support tools; {tool_templates_hint()}")
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
            raise ConfigError(f"template {self.name!r} has no {role!r} role (tool use); {tool_templates_hint()}")
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
                f"template=default but this tokenizer has no chat_template: choose one of {template_names()}"
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
            f"so turns cannot be masked exactly: choose a named template ({template_names()})"
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
    """Check role order (schema.misplaced_role) and pair each user-side message with the message answering it.

    The message index in errors counts a leading system message. A conversation that ends
    on the user side gets `None` as its last answer: that is a prompt for generation.
    """
    offset = 0
    if messages and messages[0].get("role") == "system":
        system = messages[0]["content"] if system is None else system
        messages, offset = messages[1:], 1
    misplaced = misplaced_role(messages, offset)
    if misplaced is not None:
        roles = " or ".join(map(repr, misplaced.expected))
        raise ValueError(f"message {misplaced.index}: expected role {roles}, got {misplaced.got!r}")
    if not messages:
        raise ValueError("the conversation has no user message")
    answers: list[Message | None] = [*messages[1::2], None]  # zip keeps the None only after a last user turn
    return (default_system if system is None else system), list(zip(messages[::2], answers))


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


def unique(words: list[str]) -> list[str]:
    return list(dict.fromkeys(word for word in words if word))


def template_names() -> str:
    """The catalogue's names, for error messages; imported when needed, as the catalogue is built from this module."""
    from glmtune.data.templates.catalogue import TEMPLATES

    return ", ".join(TEMPLATES)


def tool_templates_hint() -> str:
    """Where to turn when a template lacks tool use; imported when needed, like template_names."""
    from glmtune.data.templates.catalogue import TOOL_TEMPLATES_HINT

    return TOOL_TEMPLATES_HINT

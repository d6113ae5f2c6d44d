"""Turn source rows (alpaca, sharegpt, custom keys, pairwise, KTO, plain text) into Examples.

Pure functions `row -> Example`: templates and preprocessing never see a source format.
Any problem with a row raises `BadRow` naming the row's location and the reason, so the
loader can count it as a skip; nothing is dropped here.
"""

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from glmtune.data.readers import BadRow
from glmtune.data.schema import (
    ASSISTANT_SIDE,
    USER_SIDE,
    Example,
    Message,
    misplaced_role,
)

Formatting = Literal["alpaca", "sharegpt", "text"]
# What a row becomes: a conversation ending on a response to learn, a prompt with [chosen, rejected]
# answers, a prompt alone (to answer by generation), or plain text. A data shape names its target.
Target = Literal["response", "pair", "prompt", "text"]

ALPACA_COLUMNS = {
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "history": "history",
    "system": "system",
    "tools": "tools",
    "chosen": "chosen",
    "rejected": "rejected",
    "kto_tag": "kto_tag",
}
SHAREGPT_COLUMNS = {
    "messages": "conversations",
    "system": "system",
    "tools": "tools",
    "chosen": "chosen",
    "rejected": "rejected",
    "kto_tag": "kto_tag",
}
TEXT_COLUMNS = {"prompt": "text"}
DEFAULT_COLUMNS: dict[str, dict[str, str]] = {
    "alpaca": ALPACA_COLUMNS,
    "sharegpt": SHAREGPT_COLUMNS,
    "text": TEXT_COLUMNS,
}
COLUMN_KEYS = frozenset(ALPACA_COLUMNS) | frozenset(SHAREGPT_COLUMNS)

SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
TAG_KEYS = frozenset(SHAREGPT_TAGS)
TAG_ROLES = {
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "observation",
    "function_tag": "function",
    "system_tag": "system",
}
# Role names understood without any tags: ShareGPT's and OpenAI's.
KNOWN_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "observation": "observation",
    "tool": "observation",
    "function_call": "function",
    "function": "function",
    "system": "system",
}

# (prompt, response) key pairs that identify alpaca-like rows from a plain file: alpaca, ChatGLM, LLM-Tuning's q/a.
SNIFFED_KEYS = (("instruction", "output"), ("prompt", "response"), ("q", "a"), ("question", "answer"))


@dataclass(frozen=True)
class RowFormat:
    """How a source's rows map onto an Example: formatting, column names, sharegpt tags, pairwise or not.

    `columns` and `tags` hold only what a dataset_info.json entry names; the rest default.
    A column named there must exist in every row, so a misspelt name cannot silently
    empty a field; a defaulted optional column may be absent.
    """

    formatting: Formatting = "alpaca"
    columns: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    ranking: bool = False

    def column(self, key: str) -> str:
        return self.columns.get(key) or DEFAULT_COLUMNS[self.formatting].get(key, key)

    def tag(self, key: str) -> str:
        return self.tags.get(key) or SHAREGPT_TAGS[key]


def convert(row: dict[str, Any], location: str, fmt: RowFormat, target: Target) -> Example:
    """Convert one row into an Example holding `target`."""
    if target == "text":
        return from_text(row, location, fmt)
    if fmt.formatting == "sharegpt":
        return from_sharegpt(row, location, fmt, target)
    return from_alpaca(row, location, fmt, target)


def from_alpaca(
    row: dict[str, Any], location: str, fmt: RowFormat = RowFormat(), target: Target = "response"
) -> Example:
    """instruction (+ "\\n" + input), output, optional system and history of [query, response] pairs."""
    prompt = text_value(row, location, fmt, "prompt", required=True) or ""
    query = text_value(row, location, fmt, "query") or ""
    user = "\n".join(part for part in (prompt, query) if part)
    if not user.strip():
        raise BadRow(location, "empty prompt")
    messages = history_messages(row, location, fmt) + [message("user", user)]
    chosen = rejected = None
    if target == "pair":
        chosen, rejected = alpaca_pair(row, location, fmt)
    elif target == "response":
        messages.append(message("assistant", alpaca_response(row, location, fmt)))
    return make_example(
        messages=messages,
        system=text_value(row, location, fmt, "system") or None,
        tools=tools_value(row, location, fmt),
        chosen=chosen,
        rejected=rejected,
        kto_tag=kto_value(row, location, fmt),
        source=location,
    )


def alpaca_response(row: dict[str, Any], location: str, fmt: RowFormat) -> str:
    name = fmt.column("response")
    if isinstance(row.get(name), list):
        raise BadRow(location, f"column {name!r} is a list", "[chosen, rejected] pairs are for stage rm or dpo")
    response = text_value(row, location, fmt, "response", required=True) or ""
    if not response.strip():
        raise BadRow(location, "empty response")
    return response


def alpaca_pair(row: dict[str, Any], location: str, fmt: RowFormat) -> tuple[Message, Message]:
    """Chosen/rejected strings from their own columns, or ChatGLM Efficient Tuning's `output: [chosen, rejected]`."""
    if has_column(row, fmt, "chosen") or has_column(row, fmt, "rejected"):
        answers = [text_value(row, location, fmt, key, required=True) or "" for key in ("chosen", "rejected")]
    else:
        name = fmt.column("response")
        value = row.get(name)
        if not (isinstance(value, list) and len(value) >= 2 and all(isinstance(item, str) for item in value)):
            raise BadRow(
                location,
                "no [chosen, rejected] pair",
                f"stage rm/dpo needs chosen and rejected columns, or {name!r} as a list [chosen, rejected, ...]",
            )
        answers = value[:2]
    if not all(answer.strip() for answer in answers):
        raise BadRow(location, "empty response", "chosen or rejected is empty")
    return message("assistant", answers[0]), message("assistant", answers[1])


def history_messages(row: dict[str, Any], location: str, fmt: RowFormat) -> list[Message]:
    """Earlier turns as a list of [query, response] pairs, oldest first."""
    name = fmt.column("history")
    history = column_value(row, location, fmt, "history")
    if history is None:
        return []
    if not isinstance(history, list):
        raise BadRow(
            location, f"column {name!r} is not a list of [query, response] pairs", f"got {type(history).__name__}"
        )
    messages: list[Message] = []
    for index, pair in enumerate(history):
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(item, str) for item in pair)):
            raise BadRow(location, f"column {name!r} is not a list of [query, response] pairs", f"{name}[{index}]")
        if not pair[1].strip():
            raise BadRow(location, "empty response", f"{name}[{index}]")
        messages += [message("user", pair[0]), message("assistant", pair[1])]
    return messages


def from_sharegpt(
    row: dict[str, Any], location: str, fmt: RowFormat = RowFormat("sharegpt"), target: Target = "response"
) -> Example:
    """A list of {from, value} or {role, content} turns; a leading system turn becomes `system`."""
    name = fmt.column("messages")
    turns = column_value(row, location, fmt, "messages", required=True)
    if not isinstance(turns, list) or not turns:
        raise BadRow(location, f"column {name!r} is not a non-empty list of messages")
    messages = [parse_message(turn, location, fmt, f"message {index}") for index, turn in enumerate(turns)]
    system = text_value(row, location, fmt, "system") or None
    offset = 0
    if messages[0]["role"] == "system":
        system, offset = messages[0]["content"], 1
    messages = messages[offset:]
    check_role_order(messages, location, offset)
    chosen = rejected = None
    if target == "pair":
        chosen, rejected = sharegpt_pair(row, location, fmt, messages)
    elif target == "prompt" and messages and messages[-1]["role"] in ASSISTANT_SIDE:
        messages = messages[:-1]
    elif target == "response":
        check_ends_on_response(messages, location)
    if not messages:
        raise BadRow(location, f"column {name!r} holds only a system message")
    return make_example(
        messages=messages,
        system=system,
        tools=tools_value(row, location, fmt),
        chosen=chosen,
        rejected=rejected,
        kto_tag=kto_value(row, location, fmt),
        source=location,
    )


def parse_message(turn: Any, location: str, fmt: RowFormat, where: str) -> Message:
    """One turn with its role mapped onto glmtune's roles (user, assistant, observation, function, system)."""
    if not isinstance(turn, dict):
        raise BadRow(location, "a message is not an object", f"{where}: got {type(turn).__name__}")
    role_key, content_key = message_keys(turn, fmt)
    if role_key not in turn or content_key not in turn:
        raise BadRow(location, f"a message lacks {role_key!r} or {content_key!r}", where)
    raw_role, content = turn[role_key], turn[content_key]
    role = role_names(fmt).get(raw_role) if isinstance(raw_role, str) else None
    if role is None:
        raise BadRow(location, f"unknown role {raw_role!r}", where)
    if not isinstance(content, str):
        raise BadRow(location, "message content is not text", f"{where}: got {type(content).__name__}")
    return message(role, content)


def message_keys(turn: dict[str, Any], fmt: RowFormat) -> tuple[str, str]:
    """Tags given in dataset_info.json win; otherwise from/value (ShareGPT) or role/content (OpenAI)."""
    if "role_tag" in fmt.tags or "content_tag" in fmt.tags:
        return fmt.tag("role_tag"), fmt.tag("content_tag")
    return ("role", "content") if "from" not in turn and "role" in turn else ("from", "value")


def role_names(fmt: RowFormat) -> dict[str, str]:
    return {**KNOWN_ROLES, **{fmt.tag(key): role for key, role in TAG_ROLES.items()}}


def check_role_order(messages: list[Message], location: str, offset: int) -> None:
    """Turns alternate (schema.misplaced_role) and no answer is empty; the first bad message is reported."""
    misplaced = misplaced_role(messages, offset)
    in_order = messages if misplaced is None else messages[: misplaced.index - offset]
    for index, turn in enumerate(in_order):
        if turn["role"] in ASSISTANT_SIDE and not turn["content"].strip():
            raise BadRow(location, "empty response", f"message {index + offset}")
    if misplaced is not None:
        detail = f"message {misplaced.index}: expected {' or '.join(misplaced.expected)}, got {misplaced.got}"
        raise BadRow(location, "broken role order", detail)


def check_ends_on_response(messages: list[Message], location: str) -> None:
    if not messages or messages[-1]["role"] not in ASSISTANT_SIDE:
        raise BadRow(location, "conversation ends without a response", "the last message is not from the assistant")


def sharegpt_pair(
    row: dict[str, Any], location: str, fmt: RowFormat, messages: list[Message]
) -> tuple[Message, Message]:
    """Chosen and rejected final turns (message objects or strings) after a conversation ending on a user turn."""
    if not messages or messages[-1]["role"] not in USER_SIDE:
        raise BadRow(location, "broken role order", "a pairwise conversation must end on a user turn")
    answers = []
    for key in ("chosen", "rejected"):
        value = column_value(row, location, fmt, key, required=True)
        answer = message("assistant", value) if isinstance(value, str) else parse_message(value, location, fmt, key)
        if answer["role"] not in ASSISTANT_SIDE:
            raise BadRow(location, "broken role order", f"{key}: expected assistant or function, got {answer['role']}")
        if not answer["content"].strip():
            raise BadRow(location, "empty response", key)
        answers.append(answer)
    return answers[0], answers[1]


def from_text(row: dict[str, Any], location: str, fmt: RowFormat = RowFormat("text")) -> Example:
    """Plain text for pre-training: the `prompt` column if dataset_info.json maps one, else `text`."""
    text_format = RowFormat("text", {"prompt": fmt.columns.get("prompt", "text")})
    text = text_value(row, location, text_format, "prompt", required=True) or ""
    if not text.strip():
        raise BadRow(location, "empty text")
    return make_example(messages=[], text=text, source=location)


def has_column(row: dict[str, Any], fmt: RowFormat, key: str) -> bool:
    return key in fmt.columns or fmt.column(key) in row


def column_value(row: dict[str, Any], location: str, fmt: RowFormat, key: str, required: bool = False) -> Any:
    """A column's value; None when an optional column is absent. A named or required column must be there."""
    name = fmt.column(key)
    if name not in row and (required or key in fmt.columns):
        raise BadRow(location, f"missing column {name!r}")
    value = row.get(name)
    if value is None and required:
        raise BadRow(location, f"missing column {name!r}", "the value is null")
    return value


def text_value(row: dict[str, Any], location: str, fmt: RowFormat, key: str, required: bool = False) -> str | None:
    value = column_value(row, location, fmt, key, required)
    if value is not None and not isinstance(value, str):
        raise BadRow(location, f"column {fmt.column(key)!r} is not text", f"got {type(value).__name__}")
    return value


def tools_value(row: dict[str, Any], location: str, fmt: RowFormat) -> str | None:
    """Tool descriptions as JSON text, whether the file holds them as text or as JSON."""
    value = column_value(row, location, fmt, "tools")
    if value is None or isinstance(value, str):
        return value or None
    return json.dumps(value, ensure_ascii=False)


def kto_value(row: dict[str, Any], location: str, fmt: RowFormat) -> bool | None:
    """KTO's desirable/undesirable flag; "true"/"false" text is accepted because CSV has no booleans."""
    value = column_value(row, location, fmt, "kto_tag")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise BadRow(location, f"column {fmt.column('kto_tag')!r} is not true or false", f"got {value!r}")


def message(role: str, content: str) -> Message:
    return {"role": role, "content": content}


def make_example(
    messages: list[Message],
    source: str,
    system: str | None = None,
    tools: str | None = None,
    chosen: Message | None = None,
    rejected: Message | None = None,
    kto_tag: bool | None = None,
    text: str | None = None,
) -> Example:
    """Every Example key present (None where unused) so Arrow sees one consistent schema."""
    return {
        "messages": messages,
        "system": system,
        "tools": tools,
        "chosen": chosen,
        "rejected": rejected,
        "kto_tag": kto_tag,
        "text": text,
        "source": source,
    }


def sniff_format(keys: Collection[str]) -> RowFormat | None:
    """Guess a plain file's format from its first row's keys; None when nothing fits."""
    keys = set(keys)
    ranking = {"chosen", "rejected"} <= keys
    for name in ("conversations", "messages"):
        if name in keys:
            return RowFormat("sharegpt", {"messages": name}, ranking=ranking)
    for prompt, response in SNIFFED_KEYS:
        if prompt in keys and (response in keys or ranking):
            columns = {} if prompt == "instruction" else {"prompt": prompt, "response": response}
            return RowFormat("alpaca", columns, ranking=ranking)
    if "text" in keys:
        return RowFormat("text")
    return None

"""Chat templates: how a conversation becomes text, turn by turn.

A template renders each (prompt, response) turn separately so that training can put loss
on responses only, and training and inference share the very same object. Format strings
take `{content}`, and may use `{system}` (the rendered system prompt, first turn only),
`{idx}` (1-based round number), `{bos}` and `{eos}` (the tokenizer's tokens).
"""

from dataclasses import dataclass
from typing import Any, Protocol

from glmtune.errors import ConfigError

Message = dict[str, str]
RenderedTurn = tuple[str, str]


class ChatFormat(Protocol):
    name: str

    def render(self, tokenizer: Any, messages: list[Message], system: str | None = None) -> list[RenderedTurn]:
        """Return (prompt_text, response_text) per turn; the last response may be empty for generation."""
        ...

    def stop_words(self, tokenizer: Any) -> list[str]: ...


@dataclass(frozen=True)
class Template:
    """A chat format written out declaratively, as its model documents it."""

    name: str
    user: str
    assistant: str
    system: str = "{content}"
    prefix: str = ""
    default_system: str = ""
    stops: tuple[str, ...] = ()

    def render(self, tokenizer: Any, messages: list[Message], system: str | None = None) -> list[RenderedTurn]:
        system_text, pairs = split_conversation(messages, system, self.default_system)
        tokens = {"bos": tokenizer.bos_token or "", "eos": tokenizer.eos_token or ""}
        rendered_system = self.system.format(content=system_text, **tokens) if system_text else ""
        turns = []
        for index, (query, response) in enumerate(pairs):
            user_fields = {"content": query, "idx": index + 1, **tokens}
            if "{system}" in self.user:
                prompt = self.user.format(system=rendered_system if index == 0 else "", **user_fields)
            else:
                prompt = (rendered_system if index == 0 else "") + self.user.format(**user_fields)
            if index == 0:
                prompt = self.prefix.format(**tokens) + prompt
            answer = self.assistant.format(content=response, **tokens) if response is not None else ""
            turns.append((prompt, answer))
        return turns

    def stop_words(self, tokenizer: Any) -> list[str]:
        return unique([*self.stops, tokenizer.eos_token or ""])


@dataclass(frozen=True)
class TokenizerChatTemplate:
    """The tokenizer's own Jinja chat_template, split into turns by rendering growing prefixes."""

    name: str = "default"

    def render(self, tokenizer: Any, messages: list[Message], system: str | None = None) -> list[RenderedTurn]:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                f"template=default but this tokenizer has no chat_template: choose one of {', '.join(TEMPLATES)}"
            )
        system_text, pairs = split_conversation(messages, system, "")
        history: list[Message] = [{"role": "system", "content": system_text}] if system_text else []
        turns, rendered = [], ""
        for query, response in pairs:
            history.append({"role": "user", "content": query})
            with_prompt = self.apply(tokenizer, history, add_generation_prompt=True)
            answer = ""
            if response is not None:
                history.append({"role": "assistant", "content": response})
                full = self.apply(tokenizer, history, add_generation_prompt=False)
                answer = strip_prefix(full, with_prompt)
            turns.append((strip_prefix(with_prompt, rendered), answer))
            rendered = with_prompt + answer
        return turns

    @staticmethod
    def apply(tokenizer: Any, messages: list[Message], add_generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def stop_words(self, tokenizer: Any) -> list[str]:
        return unique([tokenizer.eos_token or ""])


def strip_prefix(text: str, prefix: str) -> str:
    if not text.startswith(prefix):
        raise ConfigError(
            "the tokenizer's chat_template renders earlier turns differently once later turns are added, "
            f"so turns cannot be masked exactly: choose a named template ({', '.join(TEMPLATES)})"
        )
    return text[len(prefix) :]


def split_conversation(
    messages: list[Message], system: str | None, default_system: str
) -> tuple[str, list[tuple[str, str | None]]]:
    """Check role order and pair user turns with the assistant turns that answer them.

    A conversation that ends on a user turn gets `None` as its last response: that is a
    prompt for generation.
    """
    if messages and messages[0]["role"] == "system":
        system = messages[0]["content"] if system is None else system
        messages = messages[1:]
    pairs: list[tuple[str, str | None]] = []
    for index, message in enumerate(messages):
        expected = "user" if index % 2 == 0 else "assistant"
        if message.get("role") != expected:
            raise ValueError(f"message {index}: expected role {expected!r}, got {message.get('role')!r}")
        if expected == "user":
            pairs.append((message["content"], None))
        else:
            pairs[-1] = (pairs[-1][0], message["content"])
    if not pairs:
        raise ValueError("the conversation has no user message")
    return (default_system if system is None else system), pairs


def unique(words: list[str]) -> list[str]:
    return list(dict.fromkeys(word for word in words if word))


CHATML_USER = "<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
CHATML_ASSISTANT = "{content}<|im_end|>\n"
CHATML_SYSTEM = "<|im_start|>system\n{content}<|im_end|>\n"

TEMPLATES: dict[str, ChatFormat] = {
    "default": TokenizerChatTemplate(),
    "empty": Template(name="empty", user="{content}", assistant="{content}{eos}"),
    "qwen": Template(
        name="qwen",
        user=CHATML_USER,
        assistant=CHATML_ASSISTANT,
        system=CHATML_SYSTEM,
        default_system="You are a helpful assistant.",
        stops=("<|im_end|>",),
    ),
    "smollm2": Template(
        name="smollm2",
        user=CHATML_USER,
        assistant=CHATML_ASSISTANT,
        system=CHATML_SYSTEM,
        default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        stops=("<|im_end|>",),
    ),
}


def get_template(name: str) -> ChatFormat:
    if name not in TEMPLATES:
        import difflib

        close = difflib.get_close_matches(name, list(TEMPLATES), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown template {name!r}{hint}; known: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[name]


def encode_turns(template: ChatFormat, tokenizer: Any, messages: list[Message], system: str | None = None):
    """Token ids per turn: [(prompt_ids, response_ids), ...], the unit on which loss masks are built."""
    return [
        (tokenizer.encode(prompt, add_special_tokens=False), tokenizer.encode(answer, add_special_tokens=False))
        for prompt, answer in template.render(tokenizer, messages, system)
    ]


def encode_prompt(template: ChatFormat, tokenizer: Any, messages: list[Message], system: str | None = None) -> list[int]:
    """Ids of a conversation ending on a user turn, ready for the model to answer."""
    if messages and messages[-1].get("role") != "user":
        raise ValueError("a prompt for generation must end with a user message")
    ids: list[int] = []
    for prompt_ids, response_ids in encode_turns(template, tokenizer, messages, system):
        ids += prompt_ids + response_ids
    return ids

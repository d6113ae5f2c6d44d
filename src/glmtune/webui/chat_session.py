"""Chat tab logic: one loaded ChatModel at a time, streamed into Gradio's message list.

The inference stack (torch, transformers) is imported when a model is loaded, not when the page is built.
"""

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from glmtune.chat.context_window import context_length, token_budget
from glmtune.data.schema import Message
from glmtune.default_model import DEFAULT_MODEL_ALIAS
from glmtune.errors import ConfigError
from glmtune.webui.forms import adapter_setting, model_setting, settings_argv
from glmtune.webui.workspace import Workspace

if TYPE_CHECKING:
    from glmtune.chat.chat_model import ChatModel


@dataclass(frozen=True)
class ChatChoice:
    model: str
    adapter: str
    template: str


def message_text(content: Any) -> str:
    """Gradio sends a message's content as a string or as a list of typed parts; keep the text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, list):
        return "".join(message_text(part) for part in content)
    return ""


def conversation(history: list[dict[str, Any]]) -> list[Message]:
    return [{"role": item["role"], "content": message_text(item["content"])} for item in history]


class ChatSession:
    """The model loaded in the Chat tab; loading and unloading are serialised by a lock."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.model: "ChatModel | None" = None
        self.loaded: str = ""
        self.lock = threading.Lock()

    def load(self, choice: ChatChoice) -> str:
        from glmtune.chat.chat_model import ChatModel
        from glmtune.hparams.entry import get_infer_args

        settings = {
            "model_name_or_path": model_setting(self.workspace, choice.model),
            "adapter_name_or_path": adapter_setting(self.workspace, choice.adapter),
            "template": choice.template,
        }
        model_args, data_args, generating_args = get_infer_args(settings_argv(settings))
        with self.lock:
            self.model = None  # free the previous model before loading the next
            self.model = ChatModel.from_args(model_args, data_args, generating_args)
            names = (choice.model or DEFAULT_MODEL_ALIAS, choice.adapter)
            self.loaded = " + ".join(name.strip() for name in names if name.strip())
        return self.loaded

    def default_temperature(self) -> float:
        """The loaded model's own temperature (0 where it decodes greedily): the slider starts there."""
        settings = self.model.generating_args if self.model is not None else None
        return float(settings.temperature) if settings is not None and settings.do_sample else 0.0

    def unload(self) -> None:
        with self.lock:
            self.model, self.loaded = None, ""

    def stream(self, history: list[dict[str, Any]], system: str, max_new_tokens: int, temperature: float) -> Iterator[str]:
        """The answer to the conversation so far, growing piece by piece; bad settings and a conversation that
        leaves no room in the model's context for max_new_tokens fail before the first piece."""
        if self.model is None:
            raise ConfigError("load a model first")
        messages, system_prompt = conversation(history), system.strip() or None
        prompt_tokens = len(self.model.encode(messages, system_prompt))
        context = context_length(self.model.model.config)
        stream = self.model.stream_chat(
            messages,
            system=system_prompt,
            max_new_tokens=token_budget(context, prompt_tokens, max_new_tokens, max_new_tokens, "max_new_tokens"),
            temperature=temperature,
            do_sample=temperature > 0,
        )
        return growing(stream)


def growing(pieces: Iterable[str]) -> Iterator[str]:
    answer = ""
    for piece in pieces:
        answer += piece
        yield answer

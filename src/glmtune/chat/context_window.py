"""The context window: a prompt and the tokens asked for after it must fit in the model's positions.

Past its last position a model reads positions it never learned and generates noise (a web UI chat
once ran 88 s to answer `----`), so every front end refuses such a request up front, with this rule.
"""

from typing import Any

from glmtune.errors import GlmtuneError

FALLBACK_CONTEXT = 2048  # configs that name no context length (rare) are taken to hold this many positions


class ContextLengthExceeded(GlmtuneError, ValueError):
    """The prompt plus the tokens to generate do not fit; `requested` tells whether the budget was the caller's."""

    def __init__(self, prompt_tokens: int, max_new_tokens: int, context: int, setting: str, requested: bool) -> None:
        super().__init__(
            f"the prompt ({prompt_tokens} tokens) plus {setting} ({max_new_tokens}) exceeds the model's context of "
            f"{context} tokens: shorten the conversation or lower {setting}"
        )
        self.requested = requested


def context_length(config: Any) -> int:
    """How many positions a model config holds (ChatGLM's configs call it seq_length)."""
    return getattr(config, "max_position_embeddings", None) or getattr(config, "seq_length", None) or FALLBACK_CONTEXT


def token_budget(context: int, prompt_tokens: int, requested: int | None, default: int, setting: str) -> int:
    """The tokens to generate: `requested`, else `default` cut to the room left; ContextLengthExceeded when they do
    not fit after the prompt (`setting` names the caller's field in the message)."""
    room = context - prompt_tokens
    max_new_tokens = requested or min(default, max(room, 1))
    if max_new_tokens > room:
        raise ContextLengthExceeded(prompt_tokens, max_new_tokens, context, setting, requested=bool(requested))
    return max_new_tokens

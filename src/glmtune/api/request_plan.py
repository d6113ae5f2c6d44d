"""What a chat-completion request asks for, checked and turned into generation settings before anything runs.

Each refusal is a 400 that names its field, raised before any job is queued, so the server
never half-honours a request; completions.py runs what this module planned.
"""

import json
from dataclasses import dataclass

from glmtune.api.engine import Engine
from glmtune.api.errors import ApiError
from glmtune.api.schemas import ChatCompletionRequest, ChatMessage
from glmtune.chat.context_window import ContextLengthExceeded
from glmtune.chat.context_window import token_budget as token_budget_for_context
from glmtune.data.schema import Message
from glmtune.data.templates import TOOL_TEMPLATES_HINT, ParsedReply, ToolSyntax
from glmtune.hparams.api_args import ApiArguments


@dataclass(frozen=True)
class ToolUse:
    """Tools offered to the model, and how its replies are read back."""

    syntax: ToolSyntax
    specs: list[dict]
    names: frozenset[str]
    opening: str  # the start of every reply, forced by tool_choice "required" or a named function
    parallel: bool  # False: at most one call per reply (parallel_tool_calls=false)

    def read(self, reply: str, sent: str = "") -> ParsedReply:
        """The reply's text and calls; all text when `sent` (already streamed as text) is not the text's start."""
        parsed = self.syntax.parse(reply, self.names)
        if not parsed.calls or not parsed.content.startswith(sent):
            return ParsedReply(reply)
        return ParsedReply(parsed.content, parsed.calls if self.parallel else parsed.calls[:1])


def refuse(param: str, message: str, code: str = "unsupported_parameter") -> ApiError:
    return ApiError(400, f"{param}: {message}", param=param, code=code)


def check_supported(body: ChatCompletionRequest) -> None:
    """400 for what this server would otherwise have to pretend: each refusal names its field."""
    if body.response_format is not None and body.response_format.type != "text":
        raise refuse(
            "response_format",
            f"{body.response_format.type!r} is not supported: this server does not constrain generation to JSON; "
            'send {"type": "text"} or leave it out',
        )
    if body.functions is not None or body.function_call is not None:
        name = "functions" if body.functions is not None else "function_call"
        raise refuse(name, "the deprecated functions API is not supported; use tools and tool_choice")
    if body.audio is not None or any(modality != "text" for modality in body.modalities or []):
        raise refuse("audio" if body.audio is not None else "modalities", "this server answers with text only")
    for name in ("reasoning_effort", "verbosity", "web_search_options"):
        if getattr(body, name) is not None:
            raise refuse(name, "not supported by this model")
    if body.top_logprobs is not None and not body.logprobs:
        raise refuse("top_logprobs", "needs logprobs=true", code="invalid_value")
    for place, tool in enumerate(body.tools or []):
        if tool.function.strict:
            raise refuse(
                f"tools[{place}].function.strict",
                "strict schemas are not supported: this server does not constrain arguments to a schema",
            )


def plan_tool_use(engine: Engine, body: ChatCompletionRequest) -> ToolUse | None:
    """How tools take part: None without tools or with tool_choice "none" (then the model does not see them)."""
    choice = body.tool_choice or "auto"
    if not body.tools:
        if choice not in ("none", "auto"):
            raise refuse("tool_choice", "tool_choice needs tools", code="invalid_value")
        return None
    if choice == "none":
        return None
    syntax = engine.tool_syntax
    if syntax is None:
        raise refuse(
            "tools",
            f"template {engine.template_name!r} has no tool syntax to list tools and read calls back; "
            f"serve with a template that has one ({TOOL_TEMPLATES_HINT})",
        )
    names = [tool.function.name for tool in body.tools]
    if choice == "auto":
        opening = ""
    elif choice == "required":
        opening = syntax.opening() or (syntax.opening(names[0]) if len(set(names)) == 1 else None)
        if opening is None:
            raise refuse(
                "tool_choice",
                f"template {engine.template_name!r} starts a call with the function's name, so 'required' needs a "
                "single tool or a named function (tool_choice={'type': 'function', 'function': {'name': ...}})",
            )
    else:
        if choice.function.name not in names:
            raise refuse(
                "tool_choice", f"function {choice.function.name!r} is not among the tools", code="invalid_value"
            )
        opening = syntax.opening(choice.function.name)
    specs = [tool.model_dump(exclude_none=True, exclude={"function": {"strict"}}) for tool in body.tools]
    return ToolUse(syntax, specs, frozenset(names), opening or "", body.parallel_tool_calls is not False)


def conversation(messages: list[ChatMessage]) -> list[Message]:
    """OpenAI's messages in glmtune's roles: tool calls are `function` turns, tool results `observation` turns.

    Consecutive tool results (answers to parallel calls) form one observation turn, one per line.
    An assistant message with tool_calls renders as its calls; text beside them is not kept.
    """
    turns: list[Message] = []
    for message in messages:
        if message.role in ("system", "developer"):
            turns.append({"role": "system", "content": message.text()})
        elif message.role == "assistant" and message.tool_calls:
            calls = [
                {"name": call.function.name, "arguments": json.loads(call.function.arguments)}
                for call in message.tool_calls
            ]
            turns.append({"role": "function", "content": json.dumps(calls, ensure_ascii=False)})
        elif message.role == "tool":
            if turns and turns[-1]["role"] == "observation":
                turns[-1]["content"] += "\n" + message.text()
            else:
                turns.append({"role": "observation", "content": message.text()})
        else:
            turns.append({"role": message.role, "content": message.text()})
    return turns


def token_budget(engine: Engine, settings: ApiArguments, body: ChatCompletionRequest, prompt: list[int]) -> int:
    """max_tokens, or the server default that fits the context (chat.context_window's rule); 400 when over a limit."""
    if body.token_limit and body.token_limit > settings.max_tokens_limit:
        message = f"max_tokens={body.token_limit}: this server allows at most {settings.max_tokens_limit}"
        raise ApiError(400, message, param="max_tokens", code="max_tokens_too_large")
    try:
        max_tokens = token_budget_for_context(
            engine.context_length, len(prompt), body.token_limit, min(engine.default_max_tokens, settings.max_tokens_limit), "max_tokens"
        )
    except ContextLengthExceeded as error:
        raise ApiError(400, str(error), param="max_tokens" if error.requested else "messages", code="context_length_exceeded") from error
    return max_tokens


def logit_adjustments(engine: Engine, body: ChatCompletionRequest) -> dict:
    """presence_penalty, frequency_penalty and logit_bias (token ids checked against the vocabulary)."""
    biases = {int(key): bias for key, bias in (body.logit_bias or {}).items()}
    unknown = [token for token in biases if token >= engine.vocab_size]
    if unknown:
        message = f"token id {unknown[0]} is not in the vocabulary (ids 0..{engine.vocab_size - 1})"
        raise refuse("logit_bias", message, code="invalid_value")
    return {
        "presence_penalty": body.presence_penalty or 0.0,
        "frequency_penalty": body.frequency_penalty or 0.0,
        "logit_bias": biases,
    }

"""The OpenAI chat-completions protocol, as pydantic models (requests are validated, responses documented)."""

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

MAX_STOP_SEQUENCES = 4  # OpenAI's own limit
MAX_TOP_LOGPROBS = 20  # OpenAI's own limit
MAX_JSON_DEPTH = 64  # deeper request JSON is refused before anything walks it recursively
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"  # OpenAI's rule for function names


class Strict(BaseModel):
    """OpenAI answers 400 to a field it does not know; so does this server (no field is silently dropped)."""

    model_config = ConfigDict(extra="forbid")


class TextPart(Strict):
    type: Literal["text"]
    text: str


class FunctionCall(Strict):
    name: str = Field(pattern=FUNCTION_NAME)
    arguments: str  # JSON text of an object, as OpenAI sends it

    @field_validator("arguments")
    @classmethod
    def json_object(cls, arguments: str) -> str:
        try:
            value = json.loads(arguments)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict):
            return arguments
        raise ValueError("arguments must be JSON text of an object")


class MessageToolCall(Strict):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(Strict):
    """One message; `developer` is OpenAI's newer name for `system`; `name` and `refusal` are accepted and unused."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def fields_of_its_role(self) -> "ChatMessage":
        if self.tool_calls and self.role != "assistant":
            raise PydanticCustomError(
                "invalid_role", "only assistant messages carry tool_calls", {"field": "tool_calls"}
            )
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise PydanticCustomError("missing", "Field required", {"field": "content"})
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class StreamOptions(Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # padding against side channels; nothing to pad here


class FunctionDefinition(Strict):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Strict):
    name: str = Field(pattern=FUNCTION_NAME)


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: NamedFunction


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(Strict):
    """OpenAI's chat-completions body; fields this server cannot honour are refused in request_plan.check_supported."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)  # int64, as torch seeds take
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    # Refused when given (request_plan.check_supported): features of other models and of the deprecated API.
    functions: list[Any] | None = None
    function_call: Any = None
    audio: Any = None
    modalities: list[str] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: Any = None
    # Accepted and unused: bookkeeping on OpenAI's side that does not change the answer.
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    prediction: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def valid_unicode(cls, body: Any) -> Any:
        """Every string and key must be Unicode text (no lone UTF-16 surrogate), and the JSON not too deep."""
        problem = find_invalid_json(body)
        if problem is not None:
            path, message, code = problem
            raise PydanticCustomError(code, "{path}: " + message if path else message, {"path": path, "param": path})
        return body

    @field_validator("stop")
    @classmethod
    def few_stop_sequences(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        return stop

    @field_validator("logit_bias")
    @classmethod
    def biases_by_token_id(cls, biases: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (biases or {}).items():
            if not (key.isascii() and key.isdigit()) or len(key) > 12:
                raise ValueError(f"keys are token ids, got {key[:40]!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"biases lie in [-100, 100], got {bias}")
        return biases

    @property
    def token_limit(self) -> int | None:
        """`max_completion_tokens` is the newer name of `max_tokens`."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def find_invalid_json(value: Any) -> tuple[str, str, str] | None:
    """(param, message, code) of the first string that is not Unicode text or of JSON nested too deep; else None.

    Walks iteratively, so hostile nesting cannot exhaust the stack; paths are spelled out only for the culprit.
    """
    pending: list[tuple[Any, tuple | None, int]] = [(value, None, 0)]
    while pending:
        item, where, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            return spelled(where), f"the request nests JSON deeper than {MAX_JSON_DEPTH} levels", "too_deep"
        if isinstance(item, str):
            if not is_unicode(item):
                return (
                    spelled(where),
                    "not valid Unicode text (a lone UTF-16 surrogate such as \\ud800)",
                    "invalid_unicode",
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                if not is_unicode(key):
                    return (
                        spelled(where),
                        "a key is not valid Unicode text (a lone UTF-16 surrogate)",
                        "invalid_unicode",
                    )
                pending.append((child, (where, key), depth + 1))
        elif isinstance(item, list):
            pending.extend((child, (where, index), depth + 1) for index, child in enumerate(item))
    return None


def spelled(where: tuple | None) -> str:
    """(((None, "messages"), 0), "content") as OpenAI writes a param: messages[0].content."""
    parts = []
    while where is not None:
        where, key = where
        parts.append(key)
    path = ""
    for key in reversed(parts):
        path += f"[{key}]" if isinstance(key, int) else f".{key}" if path else key
    return path


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class OutputFunction(BaseModel):
    name: str
    arguments: str  # JSON text, as OpenAI returns it


class OutputToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: OutputFunction


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[OutputToolCall] | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None
    refusal: list[TokenLogprobOut] | None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class DeltaFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    """OpenAI's streamed call: the first delta of call `index` has its id, type and name; later ones add arguments."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "glmtune"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"

"""One chat-completion request: check it, queue its n jobs, then stream or collect their text.

The scheduler thread hands text pieces to the request's asyncio queue through a LoopSink;
whichever way the request ends (finished, client gone, error), its jobs are cancelled so
the scheduler stops spending steps on them.

With tools, each reply is read back through the template's tool syntax (templates/tools.py):
calls become `tool_calls`, and a stream holds back the text that may still turn into a call.
"""

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request

from glmtune.api.engine import Engine
from glmtune.api.errors import ApiError
from glmtune.api.scheduler import GenerationJob, QueueFull, TokenLogprob
from glmtune.api.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    ErrorResponse,
    OutputFunction,
    OutputToolCall,
    TokenLogprobOut,
    TopLogprob,
    Usage,
    completion_id,
)
from glmtune.data.schema import Message
from glmtune.data.templates import (
    TOOL_TEMPLATES_HINT,
    ParsedReply,
    ToolCall,
    ToolSyntax,
)
from glmtune.errors import GlmtuneError
from glmtune.hparams.api_args import ApiArguments

LOWEST_LOGPROB = -9999.0  # OpenAI's stand-in for a token the model rules out (JSON has no -inf)


class LoopSink:
    """Hands a job's text pieces from the scheduler thread to its request's asyncio queue.

    Each piece goes with the number of log-probability records its job had then, so a
    stream sends every token's log-probability with the text it produced.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, events: asyncio.Queue, index: int) -> None:
        self.loop = loop
        self.events = events
        self.index = index
        self.records: list[TokenLogprob] = []  # the job's own list, once the job exists

    def put(self, item: str | BaseException | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (self.index, item, len(self.records)))
        except RuntimeError:  # the event loop has closed: nobody is listening any more
            pass


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


@dataclass
class ReplyState:
    """What a choice has produced so far, and how much of it a stream has sent."""

    reply: str
    sent: int = 0  # characters of the reply sent as content
    logprobs_sent: int = 0


class Completion:
    """A request in flight: its prompt, its n jobs and the queue their pieces arrive on."""

    def __init__(
        self,
        engine: Engine,
        request: ChatCompletionRequest,
        prompt: list[int],
        jobs: list[GenerationJob],
        events: asyncio.Queue,
        tool_use: ToolUse | None,
    ) -> None:
        self.engine = engine
        self.request = request
        self.prompt = prompt
        self.jobs = jobs
        self.events = events
        self.tool_use = tool_use
        self.states = [ReplyState(tool_use.opening if tool_use else "") for _ in jobs]
        self.id = completion_id()
        self.created = int(time.time())

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel()

    def usage(self) -> Usage:
        completion_tokens = sum(len(job.generated) for job in self.jobs)
        return Usage(
            prompt_tokens=len(self.prompt),
            completion_tokens=completion_tokens,
            total_tokens=len(self.prompt) + completion_tokens,
        )

    def chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> str:
        return ChatCompletionChunk(
            id=self.id, created=self.created, model=self.request.model, choices=choices, usage=usage
        ).model_dump_json(exclude_none=True)

    def logprobs(self, index: int, start: int, end: int | None = None) -> ChoiceLogprobs | None:
        if not self.request.logprobs:
            return None
        records = self.jobs[index].logprobs[start:end]
        return ChoiceLogprobs(content=[token_logprob(self.engine, record) for record in records])

    def outcome(self, index: int) -> tuple[ParsedReply, str | None]:
        """The finished reply read for calls, and the finish reason ("tool_calls" when it made any)."""
        state, job = self.states[index], self.jobs[index]
        if self.tool_use is None or job.finish_reason in ("error", "cancelled"):
            return ParsedReply(state.reply), job.finish_reason
        parsed = self.tool_use.read(state.reply, state.reply[: state.sent])
        return parsed, "tool_calls" if parsed.calls else job.finish_reason

    def text_chunk(self, index: int, records: int) -> str | None:
        """The newly settled text of a choice, with the log-probabilities of the tokens behind it."""
        state = self.states[index]
        settled = self.tool_use.syntax.settled(state.reply, self.tool_use.names) if self.tool_use else len(state.reply)
        if settled <= state.sent:
            return None
        text, state.sent = state.reply[state.sent : settled], settled
        logprobs = self.logprobs(index, state.logprobs_sent, records)
        state.logprobs_sent = max(state.logprobs_sent, records)
        return self.chunk([ChunkChoice(index=index, delta=Delta(content=text), logprobs=logprobs)])

    def closing_chunks(self, index: int) -> list[str]:
        """The rest of the choice's text, its calls (OpenAI's delta shape: name first, then arguments), its finish."""
        state = self.states[index]
        parsed, reason = self.outcome(index)
        chunks = []
        if parsed.content[state.sent :]:
            delta = Delta(content=parsed.content[state.sent :])
            chunks.append(self.chunk([ChunkChoice(index=index, delta=delta)]))
            state.sent = len(parsed.content)
        for place, call in enumerate(output_calls(parsed.calls)):
            opening = DeltaToolCall(
                index=place, id=call.id, type="function", function=DeltaFunction(name=call.function.name, arguments="")
            )
            arguments = DeltaToolCall(index=place, function=DeltaFunction(arguments=call.function.arguments))
            chunks += [
                self.chunk([ChunkChoice(index=index, delta=Delta(tool_calls=[piece]))])
                for piece in (opening, arguments)
            ]
        logprobs = self.logprobs(index, state.logprobs_sent)
        chunks.append(self.chunk([ChunkChoice(index=index, delta=Delta(), finish_reason=reason, logprobs=logprobs)]))
        return chunks

    def choice(self, index: int) -> Choice:
        parsed, reason = self.outcome(index)
        calls = output_calls(parsed.calls)
        message = AssistantMessage(content=parsed.content or (None if calls else ""), tool_calls=calls or None)
        return Choice(index=index, message=message, finish_reason=reason, logprobs=self.logprobs(index, 0))


def output_calls(calls: list[ToolCall]) -> list[OutputToolCall]:
    return [
        OutputToolCall(
            id=f"call_{uuid.uuid4().hex[:24]}",
            function=OutputFunction(name=name, arguments=json.dumps(arguments, ensure_ascii=False)),
        )
        for name, arguments in calls
    ]


def token_logprob(engine: Engine, record: TokenLogprob) -> TokenLogprobOut:
    def entry(token_id: int, logprob: float) -> TopLogprob:
        text, raw = engine.token_info(token_id)
        finite = logprob if not math.isnan(logprob) and logprob > LOWEST_LOGPROB else LOWEST_LOGPROB
        return TopLogprob(token=text, logprob=finite, bytes=raw)

    token_id, logprob, top = record
    chosen = entry(token_id, logprob)
    return TokenLogprobOut(**chosen.model_dump(), top_logprobs=[entry(*alternative) for alternative in top])


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
    """max_tokens, or the server default that fits the context; 400 when over a limit."""
    room = engine.context_length - len(prompt)
    max_tokens = body.token_limit or min(engine.default_max_tokens, max(room, 1))
    if max_tokens > settings.max_tokens_limit:
        message = f"max_tokens={max_tokens}: this server allows at most {settings.max_tokens_limit}"
        raise ApiError(400, message, param="max_tokens", code="max_tokens_too_large")
    if max_tokens > room:
        message = (
            f"the prompt ({len(prompt)} tokens) plus max_tokens ({max_tokens}) exceeds "
            f"the model's context of {engine.context_length} tokens"
        )
        param = "max_tokens" if body.token_limit else "messages"
        raise ApiError(400, message, param=param, code="context_length_exceeded")
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


def start_completion(engine: Engine, settings: ApiArguments, body: ChatCompletionRequest) -> Completion:
    """Check the request against the model and the server's limits, then queue its jobs (or 429)."""
    if body.n > settings.max_n:
        raise ApiError(400, f"n={body.n}: this server allows at most {settings.max_n}", param="n", code="n_too_large")
    check_supported(body)
    tool_use = plan_tool_use(engine, body)
    try:
        prompt = engine.encode(
            conversation(body.messages), tool_use.specs if tool_use else None, tool_use.opening if tool_use else ""
        )
    except ValueError as error:  # ConfigError included: tool turns for a template without tool use
        raise ApiError(400, str(error), param="messages", code="invalid_conversation") from error
    generation = {
        "max_new_tokens": token_budget(engine, settings, body, prompt),
        "temperature": body.temperature,
        "top_p": body.top_p,
        "stop": body.stop,
    }
    adjustments = logit_adjustments(engine, body)
    top_logprobs = (body.top_logprobs or 0) if body.logprobs else None
    # Choice i samples with seed + i: reproducible, yet the n choices differ.
    seeds = [None if body.seed is None else body.seed + index for index in range(body.n)]
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    jobs = []
    try:
        for index, seed in enumerate(seeds):
            sink = LoopSink(loop, events, index)
            jobs.append(engine.make_job(prompt, generation, seed, sink, adjustments, top_logprobs))
            sink.records = jobs[-1].logprobs
    except GlmtuneError as error:
        raise ApiError(400, str(error), code="invalid_generation_settings") from error
    try:
        engine.submit(jobs)
    except QueueFull as error:
        raise ApiError(
            429,
            f"the server is busy: {error}",
            type="rate_limit_error",
            code="queue_full",
            headers={"Retry-After": "1"},
        ) from error
    return Completion(engine, body, prompt, jobs, events, tool_use)


def generation_failed(error: BaseException) -> ApiError:
    return ApiError(500, f"generation failed: {type(error).__name__}", type="server_error")


async def stream(completion: Completion) -> AsyncIterator[str]:
    """Server-sent chunks: the role, text pieces, each choice's calls and finish reason, usage if asked, then [DONE].

    sse-starlette closes this generator when the client disconnects; `finally` then cancels the jobs.
    """
    try:
        opening = Delta(role="assistant", content="")
        yield completion.chunk([ChunkChoice(index=index, delta=opening) for index in range(len(completion.jobs))])
        remaining = len(completion.jobs)
        while remaining:
            index, item, records = await completion.events.get()
            if isinstance(item, BaseException):
                yield ErrorResponse(error=generation_failed(item).detail).model_dump_json()
                return
            if item is None:
                remaining -= 1
                for chunk in completion.closing_chunks(index):
                    yield chunk
            else:
                completion.states[index].reply += item
                chunk = completion.text_chunk(index, records)
                if chunk is not None:
                    yield chunk
        if completion.request.include_usage:
            yield completion.chunk([], usage=completion.usage())
        yield "[DONE]"
    finally:
        completion.cancel()


async def cancel_on_disconnect(request: Request, completion: Completion) -> None:
    """Once the body is read, the next ASGI message for a request is the client's disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    completion.cancel()


async def collect(completion: Completion, request: Request) -> ChatCompletion:
    """Wait for every choice; a client that hangs up meanwhile cancels its jobs."""
    watcher = asyncio.create_task(cancel_on_disconnect(request, completion))
    remaining = len(completion.jobs)
    try:
        while remaining:
            index, item, _ = await completion.events.get()
            if isinstance(item, BaseException):
                raise generation_failed(item) from item
            if item is None:
                remaining -= 1
            else:
                completion.states[index].reply += item
    finally:
        watcher.cancel()
        completion.cancel()
    return ChatCompletion(
        id=completion.id,
        created=completion.created,
        model=completion.request.model,
        choices=[completion.choice(index) for index in range(len(completion.jobs))],
        usage=completion.usage(),
    )

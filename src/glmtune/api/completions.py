"""One chat-completion request: queue its n jobs, then stream or collect their text.

The request is first checked and planned (tools, prompt budget, logit adjustments) in request_plan.py.

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
from glmtune.api.request_plan import (
    ToolUse,
    check_supported,
    conversation,
    logit_adjustments,
    plan_tool_use,
    token_budget,
)
from glmtune.api.scheduler import GenerationJob, QueueFull, TokenLogprob
from glmtune.api.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
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
from glmtune.data.templates import ParsedReply, ToolCall
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

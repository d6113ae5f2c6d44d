"""One chat-completion request: check it, queue its n jobs, then stream or collect their text.

The scheduler thread hands text pieces to the request's asyncio queue through a LoopSink;
whichever way the request ends (finished, client gone, error), its jobs are cancelled so
the scheduler stops spending steps on them.
"""

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import Request

from glmtune.api.engine import Engine
from glmtune.api.errors import ApiError
from glmtune.api.scheduler import GenerationJob, QueueFull
from glmtune.api.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ErrorResponse,
    Usage,
    completion_id,
)
from glmtune.errors import GlmtuneError
from glmtune.hparams.api_args import ApiArguments


class LoopSink:
    """Hands a job's text pieces from the scheduler thread to its request's asyncio queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, events: asyncio.Queue, index: int) -> None:
        self.loop = loop
        self.events = events
        self.index = index

    def put(self, item: str | BaseException | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (self.index, item))
        except RuntimeError:  # the event loop has closed: nobody is listening any more
            pass


class Completion:
    """A request in flight: its prompt, its n jobs and the queue their pieces arrive on."""

    def __init__(
        self, request: ChatCompletionRequest, prompt: list[int], jobs: list[GenerationJob], events: asyncio.Queue
    ) -> None:
        self.request = request
        self.prompt = prompt
        self.jobs = jobs
        self.events = events
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


def start_completion(engine: Engine, settings: ApiArguments, body: ChatCompletionRequest) -> Completion:
    """Check the request against the model and the server's limits, then queue its jobs (or 429)."""
    if body.n > settings.max_n:
        raise ApiError(400, f"n={body.n}: this server allows at most {settings.max_n}", param="n", code="n_too_large")
    messages = [{"role": message.role, "content": message.text()} for message in body.messages]
    try:
        prompt = engine.encode(messages)
    except ValueError as error:
        raise ApiError(400, str(error), param="messages", code="invalid_conversation") from error
    generation = {
        "max_new_tokens": token_budget(engine, settings, body, prompt),
        "temperature": body.temperature,
        "top_p": body.top_p,
        "stop": body.stop,
    }
    # Choice i samples with seed + i: reproducible, yet the n choices differ.
    seeds = [None if body.seed is None else body.seed + index for index in range(body.n)]
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    try:
        jobs = [engine.make_job(prompt, generation, seed, LoopSink(loop, events, i)) for i, seed in enumerate(seeds)]
    except GlmtuneError as error:
        raise ApiError(400, str(error), code="invalid_generation_settings") from error
    try:
        engine.submit(jobs)
    except QueueFull as error:
        raise ApiError(
            429, f"the server is busy: {error}", type="rate_limit_error", code="queue_full", headers={"Retry-After": "1"}
        ) from error
    return Completion(body, prompt, jobs, events)


def generation_failed(error: BaseException) -> ApiError:
    return ApiError(500, f"generation failed: {type(error).__name__}", type="server_error")


async def stream(completion: Completion) -> AsyncIterator[str]:
    """Server-sent chunks: the role, text pieces, each choice's finish reason, usage if asked, then [DONE].

    sse-starlette closes this generator when the client disconnects; `finally` then cancels the jobs.
    """
    try:
        opening = Delta(role="assistant", content="")
        yield completion.chunk([ChunkChoice(index=index, delta=opening) for index in range(len(completion.jobs))])
        remaining = len(completion.jobs)
        while remaining:
            index, item = await completion.events.get()
            if isinstance(item, BaseException):
                yield ErrorResponse(error=generation_failed(item).detail).model_dump_json()
                return
            if item is None:
                remaining -= 1
                reason = completion.jobs[index].finish_reason
                yield completion.chunk([ChunkChoice(index=index, delta=Delta(), finish_reason=reason)])
            else:
                yield completion.chunk([ChunkChoice(index=index, delta=Delta(content=item))])
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
    texts: list[list[str]] = [[] for _ in completion.jobs]
    remaining = len(completion.jobs)
    try:
        while remaining:
            index, item = await completion.events.get()
            if isinstance(item, BaseException):
                raise generation_failed(item) from item
            if item is None:
                remaining -= 1
            else:
                texts[index].append(item)
    finally:
        watcher.cancel()
        completion.cancel()
    choices = [
        Choice(index=index, message=AssistantMessage(content="".join(pieces)), finish_reason=job.finish_reason)
        for index, (pieces, job) in enumerate(zip(texts, completion.jobs))
    ]
    return ChatCompletion(
        id=completion.id,
        created=completion.created,
        model=completion.request.model,
        choices=choices,
        usage=completion.usage(),
    )

"""The FastAPI application: middleware, error handlers and the OpenAI routes.

`create_app` takes an Engine that the app's lifespan starts and stops, so tests run the
very app that `glmtune api` serves, on a tiny model.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from sse_starlette import EventSourceResponse

from glmtune.api.completions import collect, start_completion, stream
from glmtune.api.engine import Engine
from glmtune.api.errors import ApiError, install_error_handlers
from glmtune.api.middleware import BearerAuth, BodySizeLimit
from glmtune.api.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ErrorResponse,
    ModelCard,
    ModelList,
)
from glmtune.hparams.api_args import ApiArguments

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 429, 500)
}
SSE_PING_S = 15  # keeps idle proxies from closing a stream that waits in the queue


def add_middleware(app: FastAPI, settings: ApiArguments) -> None:
    """The last middleware added runs first: CORS answers preflights before auth asks for a key,
    and the key is checked before the body size, so an unauthenticated client never gets its body read.
    """
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.api_key:
        app.add_middleware(BearerAuth, api_key=settings.api_key)
    origins = settings.origins()
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials="*" not in origins,  # browsers reject credentials with a wildcard origin
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )


def create_app(engine: Engine, settings: ApiArguments, model_name: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="glmtune API", summary="OpenAI-compatible chat completions", lifespan=lifespan)
    app.state.engine = engine
    install_error_handlers(app)
    add_middleware(app, settings)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "active": engine.scheduler.active_count, "waiting": engine.scheduler.waiting_count}

    @app.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES)
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=model_name)])

    @app.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERROR_RESPONSES)
    async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Any:
        if body.model != model_name:
            message = f"model {body.model!r} does not exist; this server serves {model_name!r}"
            raise ApiError(404, message, param="model", code="model_not_found")
        completion = start_completion(engine, settings, body)
        if body.stream:
            return EventSourceResponse(stream(completion), ping=SSE_PING_S)
        return await collect(completion, request)

    return app

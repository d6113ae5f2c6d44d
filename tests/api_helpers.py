"""Run the API app on a free loopback port in a background thread, and make clients for it."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import openai
import uvicorn

from glmtune.api.app import create_app
from glmtune.api.engine import Engine
from glmtune.chat.chat_model import ChatModel
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments
from glmtune.hparams.api_args import ApiArguments

MODEL_NAME = "tiny"
LONG_PROMPT = [{"role": "user", "content": "12 * 7"}]  # the tiny models answer it greedily for 480+ tokens
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def load_chat_model(model_dir: Path) -> ChatModel:
    return ChatModel.from_args(
        ModelArguments(model_name_or_path=str(model_dir)),
        DataArguments(template="qwen"),
        GeneratingArguments(max_new_tokens=24),
    )


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.01) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds instead of hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@contextmanager
def serve(chat_model: ChatModel, **settings) -> Iterator[tuple[str, Engine]]:
    """Serve `chat_model` on 127.0.0.1 and an OS-chosen port; yield the base URL and the engine."""
    api_args = replace(ApiArguments(port=0), **settings)
    engine = Engine(chat_model, api_args.max_batch_size, api_args.max_waiting)
    server = uvicorn.Server(
        uvicorn.Config(create_app(engine, api_args, MODEL_NAME), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive())
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", engine
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def client(base_url: str, api_key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=60)

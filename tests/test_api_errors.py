"""Bad input, auth and limits: every answer is OpenAI's error object, never a bare 500."""

import asyncio
import http.client
import json
import os
import subprocess
import sys
from dataclasses import replace

import httpx
import openai
import pytest
from api_helpers import MODEL_NAME, QUESTION, client, load_chat_model, serve, wait_until

from glmtune.api.app import create_app
from glmtune.api.engine import Engine
from glmtune.hparams.api_args import ApiArguments

URL = "/v1/chat/completions"


@pytest.fixture(scope="module")
def chat_model(tiny_llama_dir):
    return load_chat_model(tiny_llama_dir)


@pytest.fixture(scope="module")
def server(chat_model):
    with serve(chat_model, max_tokens_limit=1000, max_n=4, max_body_bytes=20_000) as (base_url, engine):
        yield base_url


def assert_error(response: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


def post(server: str, **body) -> httpx.Response:
    return httpx.post(f"{server}{URL}", json={"model": MODEL_NAME, "messages": QUESTION, "max_tokens": 4, **body})


def test_malformed_json(server):
    broken = b'{"model": "tiny", "messages": ['
    response = httpx.post(f"{server}{URL}", content=broken, headers={"Content-Type": "application/json"})
    assert_error(response, 400, code="invalid_json")


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": None}, "model"),
        ({"seed": 2**70}, "seed"),
    ],
)
def test_invalid_fields_name_their_param(server, body, param):
    assert_error(post(server, **body), 400, param=param)


def test_body_that_is_not_an_object(server):
    assert_error(httpx.post(f"{server}{URL}", json=[1, 2]), 400)


def test_conversation_must_end_with_the_user(server):
    messages = [*QUESTION, {"role": "assistant", "content": "Paris."}]
    assert_error(post(server, messages=messages), 400, code="invalid_conversation", param="messages")


def test_max_tokens_over_the_context(server):
    error = assert_error(post(server, max_tokens=600), 400, code="context_length_exceeded", param="max_tokens")
    assert "512" in error["message"]


def test_max_tokens_and_n_over_the_server_limits(server):
    assert_error(post(server, max_tokens=5000), 400, code="max_tokens_too_large", param="max_tokens")
    assert_error(post(server, n=5), 400, code="n_too_large", param="n")


def test_long_prompt_over_the_context(server):
    words = " ".join(["capital"] * 700)
    response = post(server, messages=[{"role": "user", "content": words}], max_tokens=None)
    assert_error(response, 400, code="context_length_exceeded", param="messages")


def test_unknown_model_is_404(server):
    with pytest.raises(openai.NotFoundError) as caught:
        client(server).chat.completions.create(model="gpt-4", messages=QUESTION)
    assert caught.value.body["code"] == "model_not_found"


def test_unknown_route_and_wrong_method(server):
    assert_error(httpx.get(f"{server}/v1/nothing"), 404, code="not_found")
    assert_error(httpx.get(f"{server}{URL}"), 405, code="method_not_allowed")


def test_body_too_large_declared_or_streamed(server):
    big = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "x" * 30_000}]}
    assert_error(httpx.post(f"{server}{URL}", json=big), 413, code="request_too_large")

    def chunks():
        for _ in range(30):
            yield b"x" * 1000

    assert_error(httpx.post(f"{server}{URL}", content=chunks()), 413, code="request_too_large")


def test_unexpected_failure_hides_the_traceback(server, chat_model, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(chat_model, "encode", broken)
    error = assert_error(post(server), 500)
    assert error["type"] == "server_error"
    assert "secret" not in error["message"] and "Traceback" not in error["message"]


def test_error_in_generation_step_fails_only_that_request(server, chat_model, monkeypatch):
    monkeypatch.setattr(chat_model.model, "forward", lambda *args, **kwargs: 1 / 0)
    error = assert_error(post(server), 500)
    assert "ZeroDivisionError" in error["message"]
    monkeypatch.undo()
    assert post(server).status_code == 200


def test_api_key_guards_every_route_but_health(chat_model):
    with serve(chat_model, api_key="sekret") as (base_url, engine):
        assert httpx.get(f"{base_url}/health").status_code == 200
        for path in ("/v1/models", "/docs", "/openapi.json"):
            error = assert_error(httpx.get(f"{base_url}{path}"), 401, code="invalid_api_key")
            assert error["type"] == "authentication_error"
        wrong = httpx.get(f"{base_url}/v1/models", headers={"Authorization": "Bearer wrong"})
        assert_error(wrong, 401)
        with pytest.raises(openai.AuthenticationError):
            client(base_url, api_key="nope").models.list()
        api = client(base_url, api_key="sekret")
        reply = api.chat.completions.create(model=MODEL_NAME, messages=QUESTION, max_tokens=4)
        assert reply.choices[0].message.content is not None


def test_cors_is_off_unless_origins_are_given(chat_model):
    preflight = {"Origin": "http://app.test", "Access-Control-Request-Method": "POST"}
    with serve(chat_model) as (base_url, engine):
        assert "access-control-allow-origin" not in httpx.options(f"{base_url}{URL}", headers=preflight).headers
    with serve(chat_model, cors_origins="http://app.test", api_key="k") as (base_url, engine):
        headers = httpx.options(f"{base_url}{URL}", headers=preflight).headers
        assert headers["access-control-allow-origin"] == "http://app.test"
        assert headers["access-control-allow-credentials"] == "true"
    with serve(chat_model, cors_origins="*") as (base_url, engine):
        headers = httpx.options(f"{base_url}{URL}", headers=preflight).headers
        assert headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in headers


def test_glmtune_api_command_serves_with_the_env_key(tiny_llama_dir, tmp_path):
    """The real command: binds loopback on a free port and reads GLMTUNE_API_KEY."""
    log = tmp_path / "server.log"
    arguments = ["--model", str(tiny_llama_dir), "--template", "qwen", "--port", "0"]
    command = [sys.executable, "-m", "glmtune", "api", *arguments]
    env = {**os.environ, "GLMTUNE_API_KEY": "from-env"}
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)

    def started() -> bool:
        return "Uvicorn running on" in log.read_text() or process.poll() is not None

    try:
        wait_until(started, timeout=120, interval=0.1)
        line = next(line for line in log.read_text().splitlines() if "Uvicorn running on" in line)
        base_url = line.split("running on ")[1].split()[0]
        assert base_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{base_url}/v1/models").status_code == 401
        assert [model.id for model in client(base_url, api_key="from-env").models.list()] == [tiny_llama_dir.name]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_prefix_adapters_are_refused_at_startup(tiny_llama_dir):
    from peft import PrefixTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    from glmtune.api.engine import Engine
    from glmtune.errors import ConfigError

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    prefix = get_peft_model(base, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=2))
    chat_model = load_chat_model(tiny_llama_dir)
    chat_model.model = prefix
    with pytest.raises(ConfigError, match="P-Tuning"):
        Engine(chat_model, max_batch_size=4, max_waiting=4)


SURROGATE = "\ud800"  # a lone UTF-16 surrogate: JSON can write it, UTF-8 cannot
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
INVALID_UNICODE = [
    ({"messages": [{"role": "user", "content": SURROGATE}]}, "messages[0].content"),
    ({"messages": [{"role": "system", "content": "x" + SURROGATE}, *QUESTION]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]}, "messages[0].content[0].text"),
    ({"stop": SURROGATE}, "stop"),
    ({"stop": ["ok", SURROGATE]}, "stop[1]"),
    (
        {"tools": [{**TOOL, "function": {**TOOL["function"], "description": SURROGATE}}]},
        "tools[0].function.description",
    ),
    (
        {"tools": [{**TOOL, "function": {**TOOL["function"], "parameters": {SURROGATE: 1}}}]},
        "tools[0].function.parameters",
    ),
    (
        {"messages": [*QUESTION, {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "content": SURROGATE}]},
        "messages[2].content",
    ),
    ({"user": SURROGATE}, "user"),
    ({"model": SURROGATE}, "model"),
]


def raw_body(**body) -> bytes:
    """JSON as a client may send it: json.dumps escapes a lone surrogate as \\ud800 (valid JSON text)."""
    return json.dumps({"model": MODEL_NAME, "messages": QUESTION, "max_tokens": 4, **body}).encode()


@pytest.mark.parametrize("body, param", INVALID_UNICODE)
def test_invalid_unicode_anywhere_is_a_400_naming_its_field(server, body, param):
    response = httpx.post(f"{server}{URL}", content=raw_body(**body), headers={"Content-Type": "application/json"})
    error = assert_error(response, 400, code="invalid_unicode", param=param)
    assert "surrogate" in error["message"]


def test_bad_requests_keep_the_connection_open(server):
    """One keep-alive connection: every invalid request gets its 400 and the next request still goes through."""
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.auto_open = 0  # a dropped connection fails the test instead of being reopened quietly
    connection.connect()
    first_socket = connection.sock
    bodies = [raw_body(**body) for body, _ in INVALID_UNICODE] + [b'{"model": "tiny", "messages": [{"\xff": 1}]}']
    for body in [*bodies, raw_body()]:
        connection.request("POST", URL, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = json.loads(response.read())
        assert response.status == (200 if body == raw_body() else 400), payload
    assert payload["choices"][0]["message"]["content"] is not None
    assert connection.sock is first_socket
    connection.close()


def test_a_body_that_is_not_utf8_is_a_400(server):
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
    assert_error(httpx.post(f"{server}{URL}", content=body, headers={"Content-Type": "application/json"}), 400)


def call_asgi(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, int]:
    """Send one POST straight to the ASGI app; return its status and how many times it read the body."""
    reads = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": chunks[min(reads, len(chunks)) - 1], "more_body": reads < len(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }
    asyncio.run(app(scope, receive, send))
    return next(message["status"] for message in sent if message["type"] == "http.response.start"), reads


def test_api_key_is_checked_before_the_body_is_read(chat_model):
    """An unauthenticated client gets 401 before the server reads (or buffers) any of its body, large or not."""
    settings = replace(ApiArguments(), api_key="sekret", max_body_bytes=1000)
    app = create_app(Engine(chat_model, 1, 1), settings, MODEL_NAME)
    json_type = (b"content-type", b"application/json")
    declared_huge = [json_type, (b"content-length", b"1000000000")]
    assert call_asgi(app, declared_huge, [b"x" * 600] * 3) == (401, 0)
    assert call_asgi(app, [json_type], [b"x" * 600] * 3) == (401, 0)  # streamed, no length declared
    authorized = [json_type, (b"authorization", b"Bearer sekret")]
    assert call_asgi(app, authorized, [b"x" * 600] * 3)[0] == 413

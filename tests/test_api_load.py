"""Concurrent load: shared decode steps, a bounded queue (429), disconnects, short requests overtaking long ones."""

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from api_helpers import (
    LONG_PROMPT,
    MODEL_NAME,
    QUESTION,
    client,
    load_chat_model,
    serve,
    wait_until,
)

LONG = 400  # tokens; LONG_PROMPT runs this long greedily (checked by long_request_runs_to_length)
PROMPTS = [QUESTION, [{"role": "user", "content": "Hi"}], LONG_PROMPT, [{"role": "user", "content": "你好"}]]


@pytest.fixture(scope="module")
def chat_model(tiny_model_dir):
    return load_chat_model(tiny_model_dir)


@pytest.fixture(scope="module")
def server(chat_model):
    with serve(chat_model) as running:
        yield running


def start_long_stream(api: openai.OpenAI):
    """A greedy stream of LONG tokens, read up to its first text so that it is surely being decoded."""
    stream = api.chat.completions.create(
        model=MODEL_NAME, messages=LONG_PROMPT, temperature=0, max_tokens=LONG, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            return stream
    raise AssertionError("the long stream ended before any text")


def only_active_job(engine):
    """The job being decoded; it joins the batch just after its first token is streamed, so wait for it."""
    wait_until(lambda: engine.scheduler.active_count == 1)
    return engine.scheduler.batch.jobs[0]


def test_long_request_runs_to_length(server):
    api = client(server[0])
    reply = api.chat.completions.create(model=MODEL_NAME, messages=LONG_PROMPT, temperature=0, max_tokens=LONG)
    assert (reply.choices[0].finish_reason, reply.usage.completion_tokens) == ("length", LONG)


def test_concurrent_requests_share_steps_and_match_chat_model(server, chat_model):
    base_url, engine = server
    expected = [chat_model.chat(messages, temperature=0, max_new_tokens=32).text for messages in PROMPTS]
    api = client(base_url)

    def ask(messages):
        return api.chat.completions.create(model=MODEL_NAME, messages=messages, temperature=0, max_tokens=32)

    with ThreadPoolExecutor(len(PROMPTS) * 2) as pool:
        replies = list(pool.map(ask, PROMPTS * 2))
    assert [reply.choices[0].message.content for reply in replies] == expected * 2
    assert engine.scheduler.largest_batch > 1


def test_seeded_sample_does_not_depend_on_batch_companions(server):
    api = client(server[0])
    settings = {"model": MODEL_NAME, "temperature": 1.0, "top_p": 0.9, "max_tokens": 16}
    alone = api.chat.completions.create(messages=QUESTION, seed=5, **settings).choices[0].message.content
    with ThreadPoolExecutor(4) as pool:
        noise = [pool.submit(api.chat.completions.create, messages=PROMPTS[1], **settings) for _ in range(3)]
        together = api.chat.completions.create(messages=QUESTION, seed=5, **settings).choices[0].message.content
        [future.result() for future in noise]
    assert together == alone


def test_short_request_finishes_before_an_earlier_long_one(server):
    base_url, engine = server
    api = client(base_url)
    long_stream = start_long_stream(api)
    long_job = only_active_job(engine)
    short = api.chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0, max_tokens=4)
    assert short.choices[0].finish_reason in ("length", "stop")
    assert long_job.finish_reason is None and len(long_job.generated) < LONG
    long_stream.close()


def test_disconnect_stops_generation(server):
    base_url, engine = server
    stream = start_long_stream(client(base_url))
    job = only_active_job(engine)
    stream.close()
    wait_until(lambda: engine.scheduler.active_count == 0)
    assert job.finish_reason == "cancelled"
    assert len(job.generated) < LONG / 2


def test_full_queue_answers_429(chat_model):
    with serve(chat_model, max_batch_size=1, max_waiting=1) as (base_url, engine):
        api = client(base_url)
        long_stream = start_long_stream(api)
        queued: list = []
        waiter = threading.Thread(
            target=lambda: queued.append(api.chat.completions.create(model=MODEL_NAME, messages=QUESTION, max_tokens=4))
        )
        waiter.start()
        wait_until(lambda: engine.scheduler.waiting_count == 1)
        with pytest.raises(openai.RateLimitError) as caught:
            api.chat.completions.create(model=MODEL_NAME, messages=QUESTION, max_tokens=4)
        assert caught.value.body["code"] == "queue_full"
        assert caught.value.response.headers["retry-after"] == "1"
        long_stream.close()
        waiter.join(timeout=60)
        assert queued and queued[0].choices[0].message.content is not None


def test_non_streaming_client_that_hangs_up_stops_generation(server):
    """A raw socket lets the test hang up exactly while the request is being decoded."""
    base_url, engine = server
    host, port = base_url.removeprefix("http://").split(":")
    body = json.dumps({"model": MODEL_NAME, "messages": LONG_PROMPT, "temperature": 0, "max_tokens": LONG}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        job = only_active_job(engine)
    wait_until(lambda: engine.scheduler.active_count == 0)
    assert job.finish_reason == "cancelled"
    assert len(job.generated) < LONG

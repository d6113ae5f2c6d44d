"""The official openai client against a real uvicorn server on a tiny model: answers, streaming, n, seed."""

import httpx
import pytest
from api_helpers import MODEL_NAME, QUESTION, client, load_chat_model, serve

GREEDY = {"temperature": 0, "max_tokens": 24}


@pytest.fixture(scope="module")
def chat_model(tiny_model_dir):
    return load_chat_model(tiny_model_dir)


@pytest.fixture(scope="module")
def server(chat_model):
    with serve(chat_model) as (base_url, engine):
        yield base_url


def test_models_health_and_docs(server):
    assert [model.id for model in client(server).models.list()] == [MODEL_NAME]
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    assert httpx.get(f"{server}/docs").status_code == 200
    assert "/v1/chat/completions" in httpx.get(f"{server}/openapi.json").json()["paths"]


def test_greedy_answer_equals_chat_model(server, chat_model):
    reply = client(server).chat.completions.create(model=MODEL_NAME, messages=QUESTION, **GREEDY)
    expected = chat_model.chat(QUESTION, temperature=0, max_new_tokens=24)
    assert reply.choices[0].message.content == expected.text
    assert reply.choices[0].finish_reason == expected.finish_reason
    assert reply.usage.prompt_tokens == expected.prompt_tokens
    assert reply.usage.completion_tokens == expected.completion_tokens
    assert reply.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens


def test_system_message_and_history_reach_the_prompt(server, chat_model):
    messages = [
        {"role": "system", "content": "Answer in one word."},
        *QUESTION,
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "你好"},
    ]
    reply = client(server).chat.completions.create(model=MODEL_NAME, messages=messages, **GREEDY)
    expected = chat_model.chat(messages[1:], system="Answer in one word.", temperature=0, max_new_tokens=24)
    assert (reply.choices[0].message.content, reply.usage.prompt_tokens) == (expected.text, expected.prompt_tokens)


def test_streaming_equals_non_streaming(server):
    api = client(server)
    whole = api.chat.completions.create(model=MODEL_NAME, messages=QUESTION, **GREEDY)
    chunks = list(
        api.chat.completions.create(
            model=MODEL_NAME, messages=QUESTION, stream=True, stream_options={"include_usage": True}, **GREEDY
        )
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]
    assert len([piece for piece in pieces if piece]) > 1
    assert "".join(pieces) == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_stream_ends_with_done(server):
    body = {"model": MODEL_NAME, "messages": QUESTION, "stream": True, "max_tokens": 4}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=60) as response:
        data = [line for line in response.iter_lines() if line.startswith("data:")]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert data[-1] == "data: [DONE]"


def test_stop_sequence_cuts_the_answer(server):
    api = client(server)
    full = api.chat.completions.create(model=MODEL_NAME, messages=QUESTION, **GREEDY).choices[0].message.content
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    for stops in ([stop], stop):
        cut = api.chat.completions.create(model=MODEL_NAME, messages=QUESTION, stop=stops, **GREEDY).choices[0]
        assert cut.message.content == full[: full.find(stop)] and cut.finish_reason == "stop"


def test_n_returns_n_choices(server):
    reply = client(server).chat.completions.create(
        model=MODEL_NAME, messages=QUESTION, n=3, temperature=1.0, max_tokens=12, seed=7
    )
    assert [choice.index for choice in reply.choices] == [0, 1, 2]
    assert len({choice.message.content for choice in reply.choices}) > 1
    assert reply.usage.completion_tokens > 0


def test_streaming_with_n_tags_each_choice(server):
    chunks = client(server).chat.completions.create(
        model=MODEL_NAME, messages=QUESTION, n=2, stream=True, temperature=1.0, max_tokens=8, seed=1
    )
    finished = [choice.index for chunk in chunks for choice in chunk.choices if choice.finish_reason]
    assert sorted(finished) == [0, 1]


def test_seed_makes_sampling_reproducible(server):
    api = client(server)

    def sample(seed: int) -> str:
        settings = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 16, "seed": seed}
        return api.chat.completions.create(model=MODEL_NAME, messages=QUESTION, **settings).choices[0].message.content

    assert sample(11) == sample(11)
    assert sample(11) != sample(12)


def test_content_as_text_parts_equals_plain_text(server):
    api = client(server)
    text_parts = [{"type": "text", "text": "What is the capital"}, {"type": "text", "text": " of France?"}]
    parts = [{"role": "user", "content": text_parts}]
    as_parts = api.chat.completions.create(model=MODEL_NAME, messages=parts, **GREEDY)
    as_text = api.chat.completions.create(model=MODEL_NAME, messages=QUESTION, **GREEDY)
    assert as_parts.choices[0].message.content == as_text.choices[0].message.content

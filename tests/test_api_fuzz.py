"""Property-based fuzzing of `glmtune api`: whatever a client sends, never a 5xx; every 4xx is an OpenAI error object.

hypothesis draws request bodies of every kind and sends them to every route of a real uvicorn
server (a tiny model, answers of at most a few tokens) over one keep-alive connection:

* any JSON value at all: nested junk, wrong types, huge and non-finite numbers, any text,
  lone UTF-16 surrogates (written as JSON's \\ud800 escapes);
* near-valid chat requests: every OpenAI field, each either well formed or junk;
* a valid request with a lone surrogate put anywhere in it (then always 400 invalid_unicode);
* raw bytes under any content type.

The default run is bounded for CI (a fixed seed, FUZZ_EXAMPLES examples per test, seconds in all).
The longer local mode draws fresh random examples:

    GLMTUNE_FUZZ_EXAMPLES=2000 python -m pytest tests/test_api_fuzz.py -s

and prints how many inputs were tried and how many answers were 2xx, 4xx and 5xx.
"""

import json
import os
from collections import Counter

import httpx
import pytest
from api_helpers import MODEL_NAME, serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glmtune.api.schemas import ChatCompletion, ChatCompletionChunk
from glmtune.chat.chat_model import ChatModel
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments

LONG_MODE = "GLMTUNE_FUZZ_EXAMPLES" in os.environ
FUZZ_EXAMPLES = int(os.environ.get("GLMTUNE_FUZZ_EXAMPLES", "50"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,  # nothing written to the work tree
    derandomize=not LONG_MODE,  # CI replays the same inputs; the long mode explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
CHAT = "/v1/chat/completions"
ROUTES = [
    ("POST", CHAT),
    ("GET", CHAT),
    ("GET", "/v1/models"),
    ("POST", "/v1/models"),
    ("GET", "/health"),
    ("DELETE", "/health"),
    ("POST", "/v1/completions"),
    ("GET", "/openapi.json"),
    ("PUT", "/v1/chat/completions/x"),
]
ERROR_FIELDS = {"message", "type", "param", "code"}
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
TALLY: Counter = Counter()

# --- strategies ---------------------------------------------------------------------------------------------------

lone_surrogate_text = st.builds(
    lambda a, s, b: a + s + b, st.text(max_size=5), st.sampled_from(SURROGATES), st.text(max_size=5)
)
texts = st.one_of(
    st.text(max_size=40), lone_surrogate_text, st.sampled_from(["", "tiny", "user", "text", "none", "auto"])
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**30, 10**4000]),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(texts, inner, max_size=5)),
    max_leaves=30,
)


def junk_or(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a well-formed value (7 times in 8), sometimes anything at all."""
    return st.one_of(*[valid] * 7, json_values)


text_parts = st.lists(junk_or(st.fixed_dictionaries({"type": st.just("text"), "text": texts})), max_size=3)
function_specs = st.fixed_dictionaries(
    {"name": junk_or(st.sampled_from(["get_weather", "search"]))},
    optional={"description": texts, "parameters": junk_or(st.just({"type": "object"})), "strict": st.booleans()},
)
tools = st.lists(
    junk_or(st.fixed_dictionaries({"type": junk_or(st.just("function")), "function": function_specs})), max_size=3
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": texts,
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {
                    "name": junk_or(st.just("get_weather")),
                    "arguments": junk_or(st.sampled_from(['{"city": "Paris"}', "{}", "[", "1"])),
                }
            ),
        }
    ),
    max_size=2,
)
messages = st.lists(
    junk_or(
        st.fixed_dictionaries(
            {"role": junk_or(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))},
            optional={
                "content": junk_or(st.one_of(texts, text_parts, st.none())),
                "tool_calls": junk_or(tool_calls),
                "tool_call_id": texts,
                "name": texts,
            },
        )
    ),
    max_size=4,
)
chat_requests = st.fixed_dictionaries(
    {"model": junk_or(st.just(MODEL_NAME)), "messages": junk_or(messages)},
    optional={
        "temperature": junk_or(st.floats(0, 2)),
        "top_p": junk_or(st.floats(0.01, 1)),
        "max_tokens": junk_or(st.integers(1, 12)),
        "max_completion_tokens": junk_or(st.integers(1, 12)),
        "stop": junk_or(st.one_of(texts, st.lists(texts, max_size=5))),
        "n": junk_or(st.integers(1, 3)),
        "seed": junk_or(st.integers(-(2**63), 2**63 - 1)),
        "stream": junk_or(st.booleans()),
        "stream_options": junk_or(st.fixed_dictionaries({"include_usage": st.booleans()})),
        "presence_penalty": junk_or(st.floats(-2, 2)),
        "frequency_penalty": junk_or(st.floats(-2, 2)),
        "logit_bias": junk_or(st.dictionaries(st.integers(0, 500).map(str), st.floats(-100, 100), max_size=3)),
        "logprobs": junk_or(st.booleans()),
        "top_logprobs": junk_or(st.integers(0, 20)),
        "tools": junk_or(tools),
        "tool_choice": junk_or(
            st.one_of(
                st.sampled_from(["none", "auto", "required"]),
                st.fixed_dictionaries(
                    {"type": st.just("function"), "function": st.fixed_dictionaries({"name": texts})}
                ),
            )
        ),
        "parallel_tool_calls": junk_or(st.booleans()),
        "response_format": junk_or(
            st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema"])})
        ),
        "user": texts,
        "metadata": json_values,
        "unknown_field": json_values,
    },
)
VALID_REQUEST = {
    "model": MODEL_NAME,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "22"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
    "stop": ["a", "b"],
    "user": "u",
    "max_tokens": 2,
}
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/vnd.api+json",
        "garbage",
    ]
)

# --- the server and the checks ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(tiny_llama_dir):
    """One keep-alive client to a real server: short answers, small limits, so every input is answered fast."""
    chat_model = ChatModel.from_args(
        ModelArguments(model_name_or_path=str(tiny_llama_dir)),
        DataArguments(template="qwen"),
        GeneratingArguments(max_new_tokens=4),
    )
    chat_model.model.config.max_position_embeddings = 2048  # tool listings are long in the tiny tokenizer
    limits = {"max_tokens_limit": 12, "max_n": 2, "max_body_bytes": 200_000}
    with serve(chat_model, **limits) as (base_url, engine), httpx.Client(base_url=base_url, timeout=120) as session:
        yield session
    tried = sum(TALLY.values())
    print(
        f"\nAPI fuzz: {tried} inputs tried; {TALLY['2xx']} answered 2xx, {TALLY['4xx']} 4xx, {TALLY['5xx']} 5xx"
        f" ({FUZZ_EXAMPLES} examples per test, {'random' if LONG_MODE else 'fixed'} seed)"
    )


def send(session: httpx.Client, method: str, path: str, content: bytes, content_type: str | None) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    response = session.request(method, path, content=content, headers=headers)
    TALLY[f"{response.status_code // 100}xx"] += 1
    check(response, path)
    return response


def check(response: httpx.Response, path: str) -> None:
    """Never a 5xx; a 4xx is OpenAI's error object; a 2xx completion parses as OpenAI's response or stream."""
    status = response.status_code
    assert status < 500, f"{status}: {response.text[:500]}"
    if status >= 400:
        error = response.json()["error"]
        assert set(error) == ERROR_FIELDS and isinstance(error["message"], str) and error["message"], error
        return
    if path != CHAT:
        return
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
        assert events and events[-1] == "[DONE]", response.text[-500:]
        for event in events[:-1]:
            assert "error" not in json.loads(event), event
            ChatCompletionChunk.model_validate_json(event)
    else:
        ChatCompletion.model_validate_json(response.content)


def encode(body: object) -> bytes:
    """JSON text as any client may write it: ASCII escapes (lone surrogates as \\ud800), NaN and Infinity allowed."""
    return json.dumps(body).encode()


# --- the properties -----------------------------------------------------------------------------------------------


@FUZZ
@given(route=st.sampled_from(ROUTES), body=json_values, content_type=st.sampled_from(["application/json", None]))
def test_any_json_to_any_route(http, route, body, content_type):
    send(http, *route, encode(body), content_type)


@FUZZ
@given(body=chat_requests)
def test_near_valid_chat_requests(http, body):
    send(http, "POST", CHAT, encode(body), "application/json")


@FUZZ
@given(data=st.data(), surrogate=lone_surrogate_text)
def test_a_lone_surrogate_anywhere_is_invalid_unicode(http, data, surrogate):
    body = json.loads(json.dumps(VALID_REQUEST))
    node, in_key = body, data.draw(st.booleans())
    while True:
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        key, child = data.draw(st.sampled_from(children))
        if not isinstance(child, (dict, list)) or not child or data.draw(st.booleans()):
            break
        node = child
    if in_key and isinstance(node, dict):
        node[surrogate] = node.pop(key)
    else:
        node[key] = surrogate
    response = send(http, "POST", CHAT, encode(body), "application/json")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_unicode")


@FUZZ
@given(route=st.sampled_from(ROUTES), body=st.binary(max_size=300), content_type=content_types)
def test_any_bytes_to_any_route(http, route, body, content_type):
    send(http, *route, body, content_type)


def test_the_fuzzed_server_still_answers(http):
    """After everything above, the same connection still serves a plain request."""
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    assert send(http, "POST", CHAT, encode(body), "application/json").status_code == 200

"""OpenAI's request fields beyond the basics: each is honoured, or refused with a 400 that names it.

logprobs / top_logprobs come from the scores the scheduler samples from; presence_penalty,
frequency_penalty and logit_bias change those scores; response_format other than text, and
other models' features, are refused; fields OpenAI would not recognise are refused as OpenAI does.
"""

import json
import math

import httpx
import openai
import pytest
import torch
from api_helpers import MODEL_NAME, QUESTION, client, load_chat_model, serve

from glmtune.api.sampler import SamplingParams, adjust_logits

GREEDY = {"temperature": 0, "max_tokens": 12}


@pytest.fixture(scope="module")
def chat_model(tiny_llama_dir):
    return load_chat_model(tiny_llama_dir)


@pytest.fixture(scope="module")
def server(chat_model):
    with serve(chat_model) as (base_url, engine):
        yield base_url


def create(server, **settings):
    return client(server).chat.completions.create(**{"model": MODEL_NAME, "messages": QUESTION, **GREEDY, **settings})


def test_logprobs_are_the_models_own(server, chat_model):
    reply = create(server, logprobs=True, top_logprobs=3)
    choice = reply.choices[0]
    content = choice.logprobs.content
    assert len(content) == reply.usage.completion_tokens - (choice.finish_reason == "stop")
    raw = b"".join(bytes(entry.bytes) for entry in content)
    assert raw.decode("utf-8", "replace") == choice.message.content
    for entry in content:
        assert len(entry.top_logprobs) == 3
        values = [top.logprob for top in entry.top_logprobs]
        assert values == sorted(values, reverse=True) and sum(math.exp(value) for value in values) <= 1 + 1e-5
        assert (entry.top_logprobs[0].token, entry.top_logprobs[0].logprob) == (entry.token, entry.logprob)  # greedy
    prompt = chat_model.encode(QUESTION, None)
    with torch.inference_mode():
        logits = chat_model.model(input_ids=torch.tensor([prompt])).logits[0, -1].float()
    assert content[0].logprob == pytest.approx(logits.log_softmax(-1).max().item(), abs=1e-4)  # greedy: the best


def test_streamed_logprobs_equal_the_whole_answers(server):
    whole = create(server, logprobs=True, top_logprobs=2).choices[0].logprobs.content
    chunks = create(server, logprobs=True, top_logprobs=2, stream=True)
    pieces = [
        entry for chunk in chunks for choice in chunk.choices if choice.logprobs for entry in choice.logprobs.content
    ]
    assert [(entry.token, round(entry.logprob, 4)) for entry in pieces] == [
        (entry.token, round(entry.logprob, 4)) for entry in whole
    ]


def test_streamed_logprobs_arrive_with_their_text(server):
    """Each chunk carries the log-probabilities of the tokens behind its own text."""
    for chunk in create(server, logprobs=True, stream=True, max_tokens=24):
        for choice in chunk.choices:
            if choice.delta.content and choice.logprobs:
                raw = b"".join(bytes(entry.bytes) for entry in choice.logprobs.content)
                assert choice.delta.content in raw.decode("utf-8", "replace")


def test_logprobs_without_top_and_off_by_default(server):
    assert create(server).choices[0].logprobs is None
    content = create(server, logprobs=True).choices[0].logprobs.content
    assert content and all(entry.top_logprobs == [] for entry in content)


def test_logit_bias_forces_a_token(server, chat_model):
    token = chat_model.tokenizer.encode("a", add_special_tokens=False)[0]
    reply = create(server, logit_bias={str(token): 100}, max_tokens=5)
    assert reply.choices[0].message.content == "a" * 5


def test_presence_and_frequency_penalties_change_greedy_answers(server):
    plain = create(server, max_tokens=24).choices[0].message.content
    assert create(server, max_tokens=24, frequency_penalty=2.0).choices[0].message.content != plain
    assert create(server, max_tokens=24, presence_penalty=0.0).choices[0].message.content == plain


def test_penalties_follow_openais_formula():
    logits = torch.zeros(2, 6)
    params = [
        SamplingParams(0, 1, 0, 1.0, torch.Generator(), presence_penalty=0.5, frequency_penalty=0.25),
        SamplingParams(0, 1, 0, 1.0, torch.Generator(), logit_bias={1: -100.0, 4: 3.0, 99: 5.0}),
    ]
    adjusted = adjust_logits(logits, [[2, 2, 3], [2]], params)
    assert adjusted[0].tolist() == [0, 0, -1.0, -0.75, 0, 0]
    assert adjusted[1].tolist() == [0, -100.0, 0, 0, 3.0, 0]


def test_response_format_text_is_accepted(server):
    assert create(server, response_format={"type": "text"}).choices[0].message.content is not None


@pytest.mark.parametrize(
    "settings, param",
    [
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"999999": 1}}, "logit_bias"),
        ({"logit_bias": {"token": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"function_call": "auto"}, "function_call"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"verbosity": "low"}, "verbosity"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"best_of": 2}, "best_of"),
        ({"top_k": 5}, "top_k"),
        ({"stream_options": {"include_usage": True, "extra": 1}}, "stream_options.extra"),
        ({"messages": [{"role": "user", "content": "hi", "extra": 1}]}, "messages[0].extra"),
    ],
)
def test_fields_that_cannot_be_honoured_are_refused_by_name(server, settings, param):
    body = {"model": MODEL_NAME, "messages": QUESTION, "max_tokens": 4, **settings}
    response = httpx.post(f"{server}/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and param.split("[")[0].split(".")[0] in error["message"]


def test_bookkeeping_fields_are_accepted(server):
    reply = create(
        server,
        user="u-1",
        metadata={"k": "v"},
        store=False,
        service_tier="auto",
        prompt_cache_key="k",
        safety_identifier="s",
        modalities=["text"],
        prediction={"type": "content", "content": "Paris"},
        stream_options=None,
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi", "name": "ann"}],
    )
    assert reply.choices[0].message.content is not None


def test_developer_is_system(server):
    as_developer = create(server, messages=[{"role": "developer", "content": "Be brief."}, *QUESTION])
    as_system = create(server, messages=[{"role": "system", "content": "Be brief."}, *QUESTION])
    assert as_developer.choices[0].message.content == as_system.choices[0].message.content
    assert as_developer.usage.prompt_tokens == as_system.usage.prompt_tokens


def test_n_choices_each_get_their_logprobs(server):
    reply = create(server, n=2, temperature=1.0, seed=3, logprobs=True, max_tokens=6)
    for choice in reply.choices:
        raw = b"".join(bytes(entry.bytes) for entry in choice.logprobs.content)
        assert raw.decode("utf-8", "replace") == choice.message.content


def test_request_json_nested_too_deep_is_refused(server):
    body = json.dumps({"model": MODEL_NAME, "messages": QUESTION, "prediction": {"content": "DEEP"}})
    deep = body.replace('"DEEP"', "[" * 100 + "]" * 100)
    response = httpx.post(f"{server}/v1/chat/completions", content=deep, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "too_deep"
    assert response.json()["error"]["param"].startswith("prediction.content[0]")


def test_the_openai_client_sees_a_refusal_as_bad_request(server):
    with pytest.raises(openai.BadRequestError) as caught:
        create(server, response_format={"type": "json_object"})
    assert caught.value.body["param"] == "response_format"


@pytest.mark.parametrize("key", ["Foo", "list[x]", "str", "NamedToolChoice"])
def test_an_unknown_field_is_named_as_the_client_wrote_it(server, key):
    body = {"model": MODEL_NAME, "messages": QUESTION, key: 1}
    error = httpx.post(f"{server}/v1/chat/completions", json=body).json()["error"]
    assert (error["param"], error["code"]) == (key, "unknown_parameter")

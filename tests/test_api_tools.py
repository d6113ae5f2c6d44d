"""tools and tool_choice: calls read back through the template's tool syntax, as `tool_calls`, streamed or not.

A tiny random model never writes a tool call by itself, so these tests script the tokens it
samples (the real scheduler, streamer, parser and response code run around the script).
"""

import json
from types import SimpleNamespace

import openai
import pytest
import torch
from api_helpers import MODEL_NAME, QUESTION, client, load_chat_model, serve

from glmtune.api.errors import ApiError
from glmtune.api.request_plan import plan_tool_use
from glmtune.api.schemas import ChatCompletionRequest
from glmtune.chat.chat_model import ChatModel
from glmtune.data.templates import encode_prompt, get_template
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SEARCH = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
SHORT_QUESTION = [{"role": "user", "content": "Hi"}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


@pytest.fixture(scope="module")
def chat_model(tiny_llama_dir):
    """The qwen template (Hermes-style <tool_call> syntax). Tool listings take many of the tiny tokenizer's
    tokens, so the context grows past the nominal 512 (rotary positions have no hard end)."""
    chat_model = load_chat_model(tiny_llama_dir)
    chat_model.model.config.max_position_embeddings = 2048
    return chat_model


@pytest.fixture(scope="module")
def server(chat_model):
    with serve(chat_model, max_tokens_limit=4000) as (base_url, engine):
        yield base_url


@pytest.fixture
def script(chat_model, monkeypatch):
    """script(text): the model's next replies are `text` then its end token, whatever it would have sampled."""
    tokenizer = chat_model.tokenizer

    def scripted(text: str) -> None:
        tokens = iter(tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id])
        monkeypatch.setattr(
            "glmtune.api.scheduler.sample_next_tokens",
            lambda logits, params: torch.tensor([next(tokens, tokenizer.eos_token_id) for _ in params]),
        )

    return scripted


def ask(server, **settings):
    body = {"model": MODEL_NAME, "messages": SHORT_QUESTION, "tools": [WEATHER, SEARCH], "max_tokens": 200, **settings}
    return client(server).chat.completions.create(**body)


def streamed(server, **settings) -> tuple[str, list, str, list]:
    """(content, calls as {id, name, arguments}, finish_reason, the raw tool-call deltas) of a streamed answer."""
    content, calls, deltas, reason = "", {}, [], None
    for chunk in ask(server, stream=True, **settings):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            reason = choice.finish_reason or reason
            for delta in choice.delta.tool_calls or []:
                deltas.append(delta)
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                call["name"] += (delta.function.name or "") if delta.function else ""
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
    return content, [calls[index] for index in sorted(calls)], reason, deltas


def test_a_call_comes_back_as_tool_calls(server, script):
    script(CALL_TEXT)
    reply = ask(server)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert (call.type, call.function.name, json.loads(call.function.arguments)) == (
        "function",
        "get_weather",
        {"city": "Paris"},
    )
    assert call.id.startswith("call_")


def test_a_streamed_call_comes_in_openais_delta_shape(server, script):
    script("Let me check.\n" + CALL_TEXT)
    content, calls, reason, deltas = streamed(server)
    assert content == "Let me check." and reason == "tool_calls"
    assert [(call["name"], json.loads(call["arguments"])) for call in calls] == [("get_weather", {"city": "Paris"})]
    assert deltas[0].id and deltas[0].type == "function" and deltas[0].function.name == "get_weather"
    assert all(delta.id is None and delta.function.name is None for delta in deltas[1:])


def test_text_before_a_call_is_content_in_both_modes(server, script):
    script("Let me check.\n" + CALL_TEXT)
    choice = ask(server).choices[0]
    assert choice.message.content == "Let me check." and len(choice.message.tool_calls) == 1


def test_parallel_calls_and_parallel_tool_calls_false(server, script):
    two = CALL_TEXT + '\n<tool_call>\n{"name": "search", "arguments": {"q": "法国"}}\n</tool_call>'
    script(two)
    calls = ask(server).choices[0].message.tool_calls
    assert [(call.function.name, json.loads(call.function.arguments)) for call in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("search", {"q": "法国"}),
    ]
    assert len({call.id for call in calls}) == 2
    script(two)
    assert len(ask(server, parallel_tool_calls=False).choices[0].message.tool_calls) == 1
    script(two)
    _, calls, reason, _ = streamed(server)
    assert [call["name"] for call in calls] == ["get_weather", "search"] and reason == "tool_calls"


def test_a_text_answer_with_tools_offered_is_plain_content(server, script):
    script("Paris is sunny.")
    choice = ask(server).choices[0]
    assert (choice.message.content, choice.message.tool_calls, choice.finish_reason) == (
        "Paris is sunny.",
        None,
        "stop",
    )
    script("Paris is sunny.")
    content, calls, reason, _ = streamed(server)
    assert (content, calls, reason) == ("Paris is sunny.", [], "stop")


def test_a_broken_call_is_returned_as_text(server, script):
    broken = '<tool_call>\n{"name": "get_weather", "arguments": {"city": </tool_call>'
    script(broken)
    choice = ask(server).choices[0]
    assert (choice.message.content, choice.message.tool_calls, choice.finish_reason) == (broken, None, "stop")
    script(broken)
    assert streamed(server)[:3] == (broken, [], "stop")


def test_a_named_tool_choice_starts_the_answer_with_the_call(server, script):
    """The model writes only the arguments: the call's opening, with the name, is already in the prompt."""
    script('{"city": "Paris"}}\n</tool_call>')
    choice = {"type": "function", "function": {"name": "get_weather"}}
    reply = ask(server, tool_choice=choice)
    [call] = reply.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    script('{"city": "Paris"}}\n</tool_call>')
    _, calls, reason, _ = streamed(server, tool_choice=choice)
    assert [call["name"] for call in calls] == ["get_weather"] and reason == "tool_calls"


def test_required_starts_the_answer_with_a_call(server, script):
    script('search", "arguments": {"q": "x"}}\n</tool_call>')
    [call] = ask(server, tool_choice="required").choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("search", {"q": "x"})


def test_tools_are_in_the_prompt_unless_tool_choice_is_none(server, chat_model):
    api = client(server)
    plain = api.chat.completions.create(model=MODEL_NAME, messages=SHORT_QUESTION, max_tokens=1)
    offered = ask(server, max_tokens=1)
    refused = ask(server, max_tokens=1, tool_choice="none")
    expected = encode_prompt(chat_model.template, chat_model.tokenizer, SHORT_QUESTION, None, [WEATHER, SEARCH])
    assert offered.usage.prompt_tokens == len(expected) > plain.usage.prompt_tokens
    assert refused.usage.prompt_tokens == plain.usage.prompt_tokens


def test_a_tool_round_trip_renders_calls_and_results_the_templates_way(server, chat_model):
    messages = [
        *SHORT_QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 22}'},
    ]
    reply = client(server).chat.completions.create(model=MODEL_NAME, messages=messages, tools=[WEATHER], max_tokens=1)
    ours = [
        *SHORT_QUESTION,
        {"role": "function", "content": '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'},
        {"role": "observation", "content": '{"temperature": 22}'},
    ]
    prompt = encode_prompt(chat_model.template, chat_model.tokenizer, ours, None, [WEATHER])
    assert reply.usage.prompt_tokens == len(prompt)


def test_a_template_without_tool_syntax_refuses_tools(tiny_llama_dir):
    chat_model = ChatModel.from_args(
        ModelArguments(model_name_or_path=str(tiny_llama_dir)), DataArguments(template="chatml"), GeneratingArguments()
    )
    with serve(chat_model) as (base_url, engine):
        with pytest.raises(openai.BadRequestError) as caught:
            client(base_url).chat.completions.create(model=MODEL_NAME, messages=QUESTION, tools=[WEATHER])
        error = caught.value.body
        assert error["param"] == "tools"
        assert "chatml" in error["message"]
        assert all(name in error["message"] for name in ("chatglm3", "glm4", "llama3", "qwen"))
        # tool_choice "none": the tools are not shown to the model, so any template serves the request
        plain = client(base_url).chat.completions.create(
            model=MODEL_NAME, messages=QUESTION, tools=[WEATHER], tool_choice="none", max_tokens=2
        )
        assert plain.choices[0].message.tool_calls is None


@pytest.mark.parametrize(
    "settings, param",
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [], "tool_choice": "required"}, "tool_choice"),
        ({"tools": [{**WEATHER, "function": {**WEATHER["function"], "strict": True}}]}, "tools[0].function.strict"),
        ({"tools": [{**WEATHER, "function": {**WEATHER["function"], "name": "bad name!"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "custom", "function": WEATHER["function"]}]}, "tools[0].type"),
        ({"messages": [{"role": "user", "content": "x", "tool_calls": [CALL]}]}, "messages[0].tool_calls"),
        (
            {
                "messages": [
                    *SHORT_QUESTION,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"type": "function", "function": {"name": "get_weather", "arguments": "not json"}}
                        ],
                    },
                    *SHORT_QUESTION,
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        ({"functions": [WEATHER["function"]]}, "functions"),
    ],
)
def test_tool_fields_that_cannot_be_honoured_are_400(server, settings, param):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(server, **settings)
    assert caught.value.body["param"] == param


def test_required_with_a_name_first_syntax_needs_a_single_tool_or_a_name():
    """GLM-4 and ChatGLM3 start a call with the function's name: 'required' cannot force one of several."""
    engine = SimpleNamespace(tool_syntax=get_template("glm4").tools, template_name="glm4")

    def plan(**settings):
        return plan_tool_use(engine, ChatCompletionRequest(model="m", messages=SHORT_QUESTION, **settings))

    with pytest.raises(ApiError) as caught:
        plan(tools=[WEATHER, SEARCH], tool_choice="required")
    assert caught.value.detail.param == "tool_choice"
    assert plan(tools=[WEATHER], tool_choice="required").opening == "get_weather\n"
    assert (
        plan(tools=[WEATHER, SEARCH], tool_choice={"type": "function", "function": {"name": "search"}}).opening
        == "search\n"
    )
    assert plan(tools=[WEATHER, SEARCH]).opening == ""

import logging

import pytest
import torch

from glmtune.chat.chat_model import ChatModel
from glmtune.chat.streaming import held_back_length
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0.0, "max_new_tokens": 24}


@pytest.fixture(scope="module")
def chat_model(tiny_model_dir):
    return ChatModel.from_args(
        ModelArguments(model_name_or_path=str(tiny_model_dir)),
        DataArguments(template="qwen"),
        GeneratingArguments(max_new_tokens=24),
    )


def test_greedy_is_deterministic(chat_model):
    first, second = chat_model.chat(QUESTION, **GREEDY), chat_model.chat(QUESTION, **GREEDY)
    assert first.text and first == second
    assert first.completion_tokens > 0 and first.prompt_tokens > 10


def test_temperature_zero_means_greedy_even_with_do_sample(chat_model):
    assert chat_model.chat(QUESTION, do_sample=True, temperature=0.0, max_new_tokens=24) == chat_model.chat(
        QUESTION, do_sample=False, max_new_tokens=24
    )


def test_streaming_equals_non_streaming(chat_model):
    stream = chat_model.stream_chat(QUESTION, **GREEDY)
    pieces = list(stream)
    reply = chat_model.chat(QUESTION, **GREEDY)
    assert len(pieces) > 1
    assert "".join(pieces) == reply.text
    assert (stream.completion_tokens, stream.finish_reason) == (reply.completion_tokens, reply.finish_reason)


def test_stop_words_cut_the_answer(chat_model):
    full = chat_model.chat(QUESTION, **GREEDY).text
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop.strip(), "the tiny model should produce varied text"
    expected = full[: full.find(stop)]
    cut = chat_model.chat(QUESTION, stop=[stop], **GREEDY)
    assert cut.text == expected and cut.finish_reason == "stop"
    assert "".join(chat_model.stream_chat(QUESTION, stop=stop, **GREEDY)) == expected


def test_batch_equals_one_by_one(chat_model):
    conversations = [
        QUESTION,
        [{"role": "user", "content": "Hi"}],
        [*QUESTION, {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "你好"}],
    ]
    assert chat_model.batch_chat(conversations, **GREEDY) == [chat_model.chat(c, **GREEDY) for c in conversations]


def test_max_new_tokens_reports_length(chat_model):
    reply = chat_model.chat(QUESTION, temperature=0, max_new_tokens=3, stop=None)
    if reply.completion_tokens == 3:
        assert reply.finish_reason == "length"


def test_system_prompt_changes_the_prompt(chat_model):
    plain = chat_model.chat(QUESTION, **GREEDY)
    with_system = chat_model.chat(QUESTION, system="Answer in one word.", **GREEDY)
    assert with_system.prompt_tokens != plain.prompt_tokens


def test_nan_logits_fall_back_to_greedy_instead_of_crashing(chat_model, caplog):
    """Every step's logits get a NaN; sampling must continue, greedily, so two seeds agree."""
    head = chat_model.model.get_output_embeddings()

    def poison(module, inputs, output):
        output = output.clone()
        output[..., 5] = float("nan")
        output[..., 6] = float("inf")
        return output

    handle = head.register_forward_hook(poison)
    try:
        with caplog.at_level(logging.WARNING):
            torch.manual_seed(1)
            first = chat_model.chat(QUESTION, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=8)
            torch.manual_seed(2)
            second = chat_model.chat(QUESTION, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=8)
    finally:
        handle.remove()
    assert first == second
    assert "NaN/inf logits" in caplog.text


def test_closing_a_stream_early_stops_generation(chat_model):
    stream = chat_model.stream_chat(QUESTION, temperature=0, max_new_tokens=200)
    for _ in stream:
        break
    assert not stream.worker.is_alive()
    assert stream.finish_reason in ("cancelled", "stop")
    assert stream.completion_tokens < 200


def test_unknown_generation_setting_is_rejected(chat_model):
    with pytest.raises(TypeError, match="tempreature"):
        chat_model.chat(QUESTION, tempreature=0)


@pytest.mark.parametrize(
    "text, stops, expected",
    [("Hello <|", ["<|im_end|>"], 2), ("Hello", ["<|im_end|>"], 0), ("abc Obs", ["Observation:"], 3), ("x", [], 0)],
)
def test_held_back_length(text, stops, expected):
    assert held_back_length(text, stops) == expected

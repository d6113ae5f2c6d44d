"""Prompts `glmtune eval` generates from: cut to cutoff_len at their start, with the row's tools (issue 15, item 6)."""

import json
from pathlib import Path

import pytest

from glmtune.chat.chat_model import ChatModel
from glmtune.eval.predict import generate_predictions, prompt_cases
from glmtune.eval.runner import evaluate_examples
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments

TOOLS = [{"name": "get_weather", "description": "Weather in a city", "parameters": {"type": "object", "properties": {}}}]
SHORT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "system": None}
LONG = {
    "messages": [{"role": "user", "content": "tell me " * 60 + "the end"}, {"role": "assistant", "content": "ok"}],
    "system": None,
}


@pytest.fixture(scope="module")
def chat_model(tiny_llama_dir: Path) -> ChatModel:
    return ChatModel.from_args(
        ModelArguments(model_name_or_path=str(tiny_llama_dir)),
        DataArguments(template="qwen"),
        GeneratingArguments(do_sample=False, max_new_tokens=4),
    )


def test_long_prompts_keep_their_end_and_are_counted(chat_model: ChatModel, tmp_path: Path, capsys):
    short, full = (chat_model.encode(row["messages"][:-1], None) for row in (SHORT, LONG))
    cutoff = len(short) + 8
    assert len(full) > cutoff
    cases = prompt_cases(chat_model, [SHORT, LONG], cutoff_len=cutoff)
    assert [case.truncated for case in cases] == [False, True]
    assert cases[0].prompt_ids == short and cases[1].prompt_ids == full[-cutoff:]
    results = evaluate_examples(chat_model, [SHORT, LONG], tmp_path, batch_size=2, cutoff_len=cutoff)
    assert results["num_truncated_prompts"] == 1
    assert json.loads((tmp_path / "predict_results.json").read_text(encoding="utf-8"))["num_truncated_prompts"] == 1
    assert "1 prompts cut to cutoff_len" in capsys.readouterr().out


def test_nothing_is_cut_without_a_cutoff_or_under_it(chat_model: ChatModel):
    assert not any(case.truncated for case in prompt_cases(chat_model, [SHORT, LONG], cutoff_len=None))
    assert not any(case.truncated for case in prompt_cases(chat_model, [SHORT, LONG], cutoff_len=10_000))


def test_tool_descriptions_reach_the_prompt(chat_model: ChatModel):
    with_tools = {**SHORT, "tools": json.dumps(TOOLS)}
    plain, tooled = generate_predictions(chat_model, [SHORT, with_tools], batch_size=2)
    assert "get_weather" in tooled.prompt and "get_weather" not in plain.prompt
    assert tooled.prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")

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
    results = evaluate_examples(chat_model, [SHORT, LONG], tmp_path, 2, DataArguments(template="qwen", cutoff_len=cutoff))
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


def test_held_out_loss_is_the_token_mean_training_would_compute(chat_model: ChatModel):
    """Batched with padding, it equals the model's own loss over each row's answer tokens, token-weighted."""
    import torch

    from glmtune.data.loader import example_features
    from glmtune.data.shapes import encode_dataset
    from glmtune.eval.loss import held_out_loss

    data_args = DataArguments(template="qwen", cutoff_len=256)
    from datasets import Dataset

    from glmtune.data.converters import make_example

    complete = [make_example(row["messages"], "test", row.get("system")) for row in (SHORT, LONG)]
    rows, _ = encode_dataset(Dataset.from_list(complete, features=example_features()), "supervised", chat_model.template, chat_model.tokenizer, data_args)
    sums, counts = 0.0, 0
    for row in rows:
        labels = torch.tensor([row["labels"]])
        with torch.inference_mode():
            mean = chat_model.model(input_ids=torch.tensor([row["input_ids"]]), labels=labels).loss
        answer_tokens = int((labels[:, 1:] != -100).sum())
        sums, counts = sums + float(mean) * answer_tokens, counts + answer_tokens
    assert held_out_loss(chat_model, [SHORT, LONG], data_args, batch_size=2) == pytest.approx(sums / counts, abs=1e-3)

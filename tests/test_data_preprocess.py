"""Examples -> input_ids and labels: exact loss masks, truncation and skips counted, every data shape's columns."""

from typing import Any

import pytest
from datasets import Dataset
from transformers import AutoTokenizer

from glmtune.data.collators import SupervisedCollator
from glmtune.data.schema import IGNORE_INDEX
from glmtune.data.shapes import SHAPES, encode_dataset
from glmtune.data.templates import encode_turns, get_template
from glmtune.data.truncation import split_budget
from glmtune.errors import ConfigError
from glmtune.hparams.data_args import DataArguments

SYSTEM = "Be brief."
CONVERSATION = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello! How can I help you today?"},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "法国的首都？"},
    {"role": "assistant", "content": "巴黎。"},
]


def example(messages: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
    row = {
        "messages": messages,
        "system": None,
        "tools": None,
        "chosen": None,
        "rejected": None,
        "kto_tag": None,
        "text": None,
        "source": "data.jsonl:1",
    }
    return {**row, **fields}


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def qwen():
    return get_template("qwen")


def sft(rows: list[dict[str, Any]], tokenizer: Any, template: Any, **args: Any) -> tuple[Dataset, Any]:
    return encode_dataset(Dataset.from_list(rows), "supervised", template, tokenizer, DataArguments(**args))


def expected_labels(turns: list[tuple[list[int], list[int]]], learn: list[tuple[bool, bool]]) -> list[int]:
    """Labels written token by token from the turns: the reference the mask rule is checked against."""
    labels = []
    for (prompt, response), (learn_prompt, learn_response) in zip(turns, learn):
        for token in prompt:
            labels.append(token if learn_prompt else IGNORE_INDEX)
        for token in response:
            labels.append(token if learn_response else IGNORE_INDEX)
    return labels


def test_multi_turn_loss_is_on_every_assistant_turn_and_nowhere_else(tokenizer, qwen):
    dataset, report = sft([example(CONVERSATION, system=SYSTEM)], tokenizer, qwen)
    turns = encode_turns(qwen, tokenizer, CONVERSATION, SYSTEM)
    row = dataset[0]
    assert row["input_ids"] == [token for prompt, response in turns for token in prompt + response]
    assert row["labels"] == expected_labels(turns, [(False, True)] * 3)
    assert row["length"] == len(row["input_ids"])
    spans, current = [], []
    for token, label in zip(row["input_ids"], row["labels"]):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    spans.append(tokenizer.decode(current))
    answers = [message["content"] for message in CONVERSATION[1::2]]
    assert spans == [f"{answer}<|im_end|>\n" for answer in answers]
    assert (report.read, report.kept, report.truncated, sum(report.skipped.values())) == (1, 1, 0, 0)


def test_train_on_prompt_puts_loss_on_every_token(tokenizer, qwen):
    dataset, _ = sft([example(CONVERSATION)], tokenizer, qwen, train_on_prompt=True)
    assert dataset[0]["labels"] == dataset[0]["input_ids"]


def test_mask_history_keeps_loss_on_the_last_turn_only(tokenizer, qwen):
    turns = encode_turns(qwen, tokenizer, CONVERSATION, None)
    dataset, _ = sft([example(CONVERSATION)], tokenizer, qwen, mask_history=True)
    assert dataset[0]["labels"] == expected_labels(turns, [(False, False), (False, False), (False, True)])
    dataset, _ = sft([example(CONVERSATION)], tokenizer, qwen, mask_history=True, train_on_prompt=True)
    assert dataset[0]["labels"] == expected_labels(turns, [(False, False), (False, False), (True, True)])


def test_default_system_replaces_the_templates_own_only_when_a_row_has_none(tokenizer, qwen):
    rows = [example(CONVERSATION[:2]), example(CONVERSATION[:2], system="Row system.")]
    dataset, _ = sft(rows, tokenizer, qwen, default_system="Configured system.")
    texts = [tokenizer.decode(ids) for ids in dataset["input_ids"]]
    assert "Configured system." in texts[0] and "helpful" not in texts[0]
    assert "Row system." in texts[1] and "Configured" not in texts[1]


def test_tool_calls_carry_loss_and_tool_results_do_not(tokenizer, qwen):
    tools = '[{"name": "get_weather", "description": "Current weather", "parameters": {"type": "object"}}]'
    messages = [
        user("Weather in Paris?"),
        {"role": "function", "content": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
        {"role": "observation", "content": '{"temperature": 22}'},
        assistant("22 °C."),
    ]
    dataset, report = sft([example(messages, tools=tools), example(messages, tools="[not json")], tokenizer, qwen)
    turns = encode_turns(qwen, tokenizer, messages, None, tools)
    assert "get_weather" in tokenizer.decode(turns[0][0]), "the tools are listed in the prompt"
    assert dataset[0]["labels"] == expected_labels(turns, [(False, True)] * 2)
    assert report.skipped == {"invalid conversation": 1}


def test_split_budget_keeps_short_parts_whole_and_shares_in_proportion():
    assert split_budget(10, 5, 20) == (10, 5)
    assert split_budget(100, 5, 20) == (15, 5)
    assert split_budget(5, 100, 20) == (5, 15)
    assert split_budget(300, 100, 40) == (30, 10)


def test_overlength_samples_are_truncated_per_turn_and_counted(tokenizer, qwen):
    cutoff = 40
    turns = encode_turns(qwen, tokenizer, CONVERSATION, None)
    assert sum(len(prompt) + len(response) for prompt, response in turns) > cutoff
    rows = [example(CONVERSATION, source="long.jsonl:3"), example(CONVERSATION[:2], system="")]
    dataset, report = sft(rows, tokenizer, qwen, cutoff_len=cutoff)
    assert report.truncated == 1 and report.kept == 2
    row = dataset[0]
    assert len(row["input_ids"]) == cutoff
    first_prompt, first_response = turns[0]
    prompt_keep, response_keep = split_budget(len(first_prompt), len(first_response), cutoff)
    assert row["input_ids"][:prompt_keep] == first_prompt[:prompt_keep]
    assert row["labels"][:prompt_keep] == [IGNORE_INDEX] * prompt_keep
    assert row["labels"][prompt_keep : prompt_keep + response_keep] == first_response[:response_keep]


def test_truncation_with_mask_history_keeps_the_turn_that_carries_loss(tokenizer, qwen):
    turns = encode_turns(qwen, tokenizer, CONVERSATION, None)
    last_prompt, last_response = turns[-1]
    cutoff = len(last_prompt) + len(last_response) + 4
    dataset, report = sft([example(CONVERSATION)], tokenizer, qwen, cutoff_len=cutoff, mask_history=True)
    row = dataset[0]
    assert report.truncated == 1 and len(row["input_ids"]) == cutoff
    assert row["input_ids"][-len(last_prompt) - len(last_response) :] == last_prompt + last_response
    assert [label for label in row["labels"] if label != IGNORE_INDEX] == last_response


def test_skip_overlength_skips_and_counts_with_location(tokenizer, qwen):
    rows = [example(CONVERSATION, source="long.jsonl:7"), example(CONVERSATION[:2], system="", source="long.jsonl:8")]
    dataset, report = sft(rows, tokenizer, qwen, cutoff_len=40, skip_overlength=True)
    assert len(dataset) == 1 and report.kept == 1 and report.truncated == 0
    assert report.skipped == {"longer than cutoff_len": 1}
    (location,) = report.examples["longer than cutoff_len"]
    assert location.startswith("long.jsonl:7 (") and "> 40" in location
    assert "long.jsonl:7" in report.summary()


def test_invalid_rows_are_counted_skips_with_location(tokenizer, qwen):
    rows = [
        example(CONVERSATION[:2], source="bad.jsonl:1"),
        example([], source="bad.jsonl:2"),
        example([user("Hi")], source="bad.jsonl:3"),
        example([user("Hi"), assistant("  ")], source="bad.jsonl:4"),
        example([user("Hi"), user("again"), assistant("ok")], source="bad.jsonl:5"),
        example([user("Hi"), assistant("ok")], source=None),
    ]
    dataset, report = sft(rows, tokenizer, qwen)
    assert len(dataset) == 2 and (report.read, report.kept) == (6, 2)
    assert report.skipped == {
        "empty conversation": 1,
        "conversation ends without a response": 1,
        "empty response": 1,
        "invalid conversation": 1,
    }
    assert report.examples["empty conversation"] == ["bad.jsonl:2"]
    assert report.examples["invalid conversation"][0].startswith("bad.jsonl:5 (message 1: expected role")


def test_a_row_without_source_is_located_by_index(tokenizer, qwen):
    rows = [example(CONVERSATION[:2]), example([], source=None)]
    _, report = sft(rows, tokenizer, qwen)
    assert report.examples["empty conversation"] == ["row 1"]


def test_unknown_data_shape_lists_the_known_ones(tokenizer, qwen):
    with pytest.raises(ConfigError, match=f"known: {', '.join(SHAPES)}"):
        encode_dataset(Dataset.from_list([example(CONVERSATION)]), "sfx", qwen, tokenizer, DataArguments())


def test_workers_give_the_same_result_as_one_process(tokenizer, qwen):
    rows = [example(CONVERSATION[: 2 * (index % 3 + 1)], source=f"d.jsonl:{index}") for index in range(12)]
    rows[5] = example([], source="d.jsonl:5")
    one, report_one = sft(rows, tokenizer, qwen, cutoff_len=48)
    two, report_two = sft(rows, tokenizer, qwen, cutoff_len=48, preprocessing_num_workers=2)
    assert one.to_dict() == two.to_dict()
    assert report_one == report_two and report_one.truncated > 0 and report_one.kept == 11


def test_pretraining_text_is_joined_with_eos_and_cut_into_blocks(tokenizer):
    texts = ["The capital of France is Paris.", "", "法国的首都是巴黎。" * 3, "1 + 2 = 3."]
    rows = [example([], text=text, source=f"corpus.txt:{index + 1}") for index, text in enumerate(texts)]
    dataset, report = encode_dataset(Dataset.from_list(rows), "text", None, tokenizer, DataArguments(cutoff_len=16))
    stream = []
    for text in texts:
        if text:
            stream += tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
    blocks = dataset["input_ids"]
    assert [token for block in blocks for token in block] == stream
    assert all(len(block) == 16 for block in blocks[:-1]) and 0 < len(blocks[-1]) <= 16
    assert dataset["labels"] == blocks and dataset["length"] == [len(block) for block in blocks]
    assert (report.read, report.kept) == (4, 3) and report.examples["empty text"] == ["corpus.txt:2"]


def test_supervised_collator_pads_on_the_right_with_ignored_labels(tokenizer):
    features = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "length": 3}, {"input_ids": [8], "labels": [8]}]
    batch = SupervisedCollator(tokenizer)(features)
    pad = tokenizer.pad_token_id
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, pad, pad]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    assert SupervisedCollator(tokenizer, pad_to_multiple_of=8)(features)["input_ids"].shape == (2, 8)

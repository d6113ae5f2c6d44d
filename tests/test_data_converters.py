"""Converters: alpaca, sharegpt, custom keys, pairwise, KTO and text rows become one Example schema."""

import pytest

from glmtune.data.converters import (
    RowFormat,
    convert,
    from_alpaca,
    from_sharegpt,
    from_text,
    sniff_format,
)
from glmtune.data.identity import fill_identity
from glmtune.data.readers import BadRow
from glmtune.data.schema import Example, RowError

WHERE = "data/train.json[7]"
EXAMPLE_KEYS = {"messages", "system", "tools", "chosen", "rejected", "kto_tag", "text", "source"}
SHAREGPT = RowFormat("sharegpt")


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def bad(function, *args) -> BadRow:
    with pytest.raises(BadRow) as caught:
        function(*args)
    assert isinstance(caught.value, RowError)
    assert str(caught.value).startswith(WHERE + ": ")
    return caught.value


def test_alpaca_joins_instruction_and_input_and_keeps_every_key():
    example = from_alpaca({"instruction": "Translate", "input": "bonjour", "output": "hello"}, WHERE)
    assert set(example) == EXAMPLE_KEYS
    assert example["messages"] == [user("Translate\nbonjour"), assistant("hello")]
    assert example["source"] == WHERE
    assert example["system"] is None and example["chosen"] is None and example["text"] is None


def test_alpaca_without_input_system_and_history_become_messages():
    row = {
        "instruction": "And 3+3?",
        "input": "",
        "output": "6",
        "system": "Be brief.",
        "history": [["1+1?", "2"], ["2+2?", "4"]],
    }
    example = from_alpaca(row, WHERE)
    assert example["system"] == "Be brief."
    assert example["messages"] == [
        user("1+1?"),
        assistant("2"),
        user("2+2?"),
        assistant("4"),
        user("And 3+3?"),
        assistant("6"),
    ]


def test_custom_keys_map_through_columns_like_llm_tuning_q_and_a():
    fmt = RowFormat("alpaca", {"prompt": "q", "response": "a"})
    example = from_alpaca({"q": "What is 2*3?", "a": "6"}, WHERE, fmt)
    assert example["messages"] == [user("What is 2*3?"), assistant("6")]


def test_missing_column_is_a_row_error_naming_the_column():
    error = bad(from_alpaca, {"instruction": "hi", "input": ""}, WHERE)
    assert error.reason == "missing column 'output'"


def test_a_column_named_in_dataset_info_must_exist_even_if_optional():
    fmt = RowFormat("alpaca", {"system": "sys_prompt"})
    error = bad(from_alpaca, {"instruction": "hi", "output": "yo"}, WHERE, fmt)
    assert error.reason == "missing column 'sys_prompt'"


def test_empty_response_is_a_row_error():
    assert bad(from_alpaca, {"instruction": "hi", "output": "  "}, WHERE).reason == "empty response"
    error = bad(from_alpaca, {"instruction": "hi", "output": "yo", "history": [["a", ""]]}, WHERE)
    assert error.reason == "empty response" and "history[0]" in str(error)


def test_wrong_types_are_row_errors():
    assert bad(from_alpaca, {"instruction": 5, "output": "x"}, WHERE).reason == "column 'instruction' is not text"
    error = bad(from_alpaca, {"instruction": "a", "output": "b", "history": [["only one"]]}, WHERE)
    assert error.reason == "column 'history' is not a list of [query, response] pairs"
    assert bad(from_alpaca, {"instruction": "", "input": "", "output": "b"}, WHERE).reason == "empty prompt"


def test_response_list_is_a_pair_only_for_pairwise_stages():
    row = {"instruction": "Which?", "input": "", "output": ["good", "bad", "worse"], "history": []}
    assert bad(from_alpaca, row, WHERE).reason == "column 'output' is a list"
    example = from_alpaca(row, WHERE, RowFormat(), "pair")
    assert example["messages"] == [user("Which?")]
    assert example["chosen"] == assistant("good") and example["rejected"] == assistant("bad")


def test_alpaca_pairs_from_chosen_and_rejected_columns():
    row = {"instruction": "Q", "input": "", "chosen": "yes", "rejected": "no"}
    example = from_alpaca(row, WHERE, RowFormat(ranking=True), "pair")
    assert (example["chosen"]["content"], example["rejected"]["content"]) == ("yes", "no")
    assert (
        bad(from_alpaca, {"instruction": "Q", "output": "one"}, WHERE, RowFormat(), "pair").reason
        == "no [chosen, rejected] pair"
    )
    assert (
        bad(from_alpaca, {"instruction": "Q", "chosen": "yes"}, WHERE, RowFormat(), "pair").reason
        == "missing column 'rejected'"
    )


def test_sharegpt_from_value_with_a_leading_system_turn_tools_and_function_calls():
    row = {
        "conversations": [
            {"from": "system", "value": "You call tools."},
            {"from": "human", "value": "Weather in Paris?"},
            {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Paris"}}'},
            {"from": "observation", "value": '{"temp": 21}'},
            {"from": "gpt", "value": "It is 21 °C."},
        ],
        "tools": [{"name": "weather"}],
    }
    example = from_sharegpt(row, WHERE, SHAREGPT)
    assert example["system"] == "You call tools."
    assert [turn["role"] for turn in example["messages"]] == ["user", "function", "observation", "assistant"]
    assert example["tools"] == '[{"name": "weather"}]'


def test_sharegpt_role_and_content_openai_style():
    fmt = RowFormat("sharegpt", {"messages": "messages"})
    row = {
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"},
        ]
    }
    example = from_sharegpt(row, WHERE, fmt)
    assert example["system"] == "S" and example["messages"] == [user("hi"), assistant("yo")]


def test_sharegpt_custom_tags_from_dataset_info():
    fmt = RowFormat(
        "sharegpt",
        {"messages": "dialog"},
        {"role_tag": "speaker", "content_tag": "text", "user_tag": "customer", "assistant_tag": "agent"},
    )
    row = {"dialog": [{"speaker": "customer", "text": "hi"}, {"speaker": "agent", "text": "hello"}]}
    assert from_sharegpt(row, WHERE, fmt)["messages"] == [user("hi"), assistant("hello")]


def test_broken_role_order_names_location_and_message_index():
    row = {
        "conversations": [
            {"from": "system", "value": "S"},
            {"from": "human", "value": "a"},
            {"from": "human", "value": "b"},
        ]
    }
    error = bad(from_sharegpt, row, WHERE, SHAREGPT)
    assert error.reason == "broken role order"
    assert "message 2" in str(error)


def test_sharegpt_row_errors():
    assert (
        bad(from_sharegpt, {"conversations": [{"from": "alien", "value": "x"}]}, WHERE, SHAREGPT).reason
        == "unknown role 'alien'"
    )
    ends_on_user = {"conversations": [{"from": "human", "value": "a"}]}
    assert bad(from_sharegpt, ends_on_user, WHERE, SHAREGPT).reason == "conversation ends without a response"
    empty = {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": ""}]}
    assert bad(from_sharegpt, empty, WHERE, SHAREGPT).reason == "empty response"
    assert bad(from_sharegpt, {"turns": []}, WHERE, SHAREGPT).reason == "missing column 'conversations'"
    no_text = {"conversations": [{"from": "human", "value": ["a"]}, {"from": "gpt", "value": "b"}]}
    assert bad(from_sharegpt, no_text, WHERE, SHAREGPT).reason == "message content is not text"


def test_sharegpt_pairs_take_message_objects_after_a_user_turn():
    fmt = RowFormat("sharegpt", ranking=True)
    row = {
        "conversations": [{"from": "human", "value": "Q"}],
        "chosen": {"from": "gpt", "value": "good"},
        "rejected": {"from": "gpt", "value": "bad"},
    }
    example = from_sharegpt(row, WHERE, fmt, "pair")
    assert example["messages"] == [user("Q")]
    assert example["chosen"] == assistant("good") and example["rejected"] == assistant("bad")
    wrong = {**row, "chosen": {"from": "human", "value": "good"}}
    assert bad(from_sharegpt, wrong, WHERE, fmt, "pair").reason == "broken role order"


def test_kto_tag_is_a_boolean():
    row = {"instruction": "Q", "output": "A", "kto_tag": False}
    assert from_alpaca(row, WHERE)["kto_tag"] is False
    assert from_alpaca({**row, "kto_tag": "True"}, WHERE)["kto_tag"] is True
    assert bad(from_alpaca, {**row, "kto_tag": 3}, WHERE).reason == "column 'kto_tag' is not true or false"
    sharegpt = {"messages": [user("Q"), assistant("A")], "kto_tag": True}
    assert from_sharegpt(sharegpt, WHERE, RowFormat("sharegpt", {"messages": "messages"}))["kto_tag"] is True


def test_text_for_pretraining():
    example = from_text({"text": "Once upon a time."}, WHERE)
    assert example["text"] == "Once upon a time." and example["messages"] == []
    assert set(example) == EXAMPLE_KEYS
    assert from_text({"body": "x"}, WHERE, RowFormat("alpaca", {"prompt": "body"}))["text"] == "x"
    assert bad(from_text, {"text": " "}, WHERE).reason == "empty text"


def test_convert_dispatches_by_target():
    row = {"instruction": "Q", "output": "A", "text": "raw"}
    assert convert(row, WHERE, RowFormat(), "response")["messages"] == [user("Q"), assistant("A")]
    assert convert(row, WHERE, RowFormat(), "prompt")["messages"] == [user("Q")]
    assert convert(row, WHERE, RowFormat(), "text")["text"] == "raw"
    sharegpt = {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}
    assert convert(sharegpt, WHERE, SHAREGPT, "prompt")["messages"] == [user("Q")]


def test_identity_placeholders_of_both_projects_are_filled():
    example: Example = from_alpaca(
        {
            "instruction": "Who are you?",
            "output": "I am {{name}} by {{author}}; 我是 <NAME>，由 <AUTHOR> 开发。",
            "system": "{{name}}",
        },
        WHERE,
    )
    filled = fill_identity(example, "Ada", "Lovelace Labs")
    assert filled["messages"][1]["content"] == "I am Ada by Lovelace Labs; 我是 Ada，由 Lovelace Labs 开发。"
    assert filled["system"] == "Ada"
    assert example["messages"][1]["content"].startswith("I am {{name}}")  # pure: the input is untouched


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"instruction", "input", "output"}, RowFormat("alpaca")),
        ({"q", "a"}, RowFormat("alpaca", {"prompt": "q", "response": "a"})),
        ({"conversations"}, RowFormat("sharegpt", {"messages": "conversations"})),
        ({"messages", "chosen", "rejected"}, RowFormat("sharegpt", {"messages": "messages"}, ranking=True)),
        ({"instruction", "chosen", "rejected"}, RowFormat("alpaca", ranking=True)),
        ({"text"}, RowFormat("text")),
        ({"foo", "bar"}, None),
    ],
)
def test_sniff_format_from_keys(keys, expected):
    assert sniff_format(keys) == expected

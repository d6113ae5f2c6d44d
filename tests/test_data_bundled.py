"""The datasets glmtune ships: identity, a pairwise preference set and generated arithmetic."""

import json
import re
from fractions import Fraction
from importlib.resources import files

import pytest

from glmtune.data.generators import GENERATORS, math_4op, run_generator
from glmtune.errors import ConfigError
from glmtune.hparams.data_args import DataArguments

RESOURCES = files("glmtune") / "resources"
EQUATION = re.compile(r"^(\d+) ([-+*/]) (\d+) = (-?\d+)$")
OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": Fraction}


def read_resource(name: str) -> list | dict:
    return json.loads((RESOURCES / name).read_text(encoding="utf-8"))


def has_chinese(text: str) -> bool:
    return re.search(r"[\u4e00-\u9fff]", text) is not None


def load(dataset: str, stage: str = "sft", **settings):
    from glmtune.data.loader import load_examples

    return list(load_examples(DataArguments(dataset=dataset, **settings), stage).train)


def last_answer(example: dict) -> str:
    return example["messages"][-1]["content"]


def test_dataset_info_names_the_bundled_datasets_and_their_files_exist():
    info = read_resource("dataset_info.json")
    assert {"identity", "preference", "math_4op"} <= set(info)
    for name, entry in info.items():
        assert "file_name" in entry or "generator" in entry, name
        if "file_name" in entry:
            assert (RESOURCES / entry["file_name"]).is_file(), name
    assert info["preference"]["ranking"] is True
    assert info["math_4op"] == {"generator": "math_4op", "formatting": "alpaca", "generator_args": {"size": 2000, "seed": 42}}


def test_identity_file_is_bilingual_varied_and_uses_placeholders():
    rows = read_resource("identity.json")
    assert len(rows) >= 80
    chinese = [row for row in rows if has_chinese(row["instruction"])]
    assert 0.4 <= len(chinese) / len(rows) <= 0.6
    assert len({row["instruction"] for row in rows}) == len(rows)
    assert all("{{name}}" in row["output"] and "{{author}}" in row["output"] for row in rows)


def test_preference_file_is_pairwise_and_bilingual():
    rows = read_resource("preference.json")
    assert 60 <= len(rows) <= 120
    assert all(row["chosen"] and row["rejected"] and row["chosen"] != row["rejected"] for row in rows)
    shorter = sum(len(row["chosen"]) < len(row["rejected"]) for row in rows)  # not a lesson that longer is better
    assert 0.4 <= shorter / len(rows) <= 0.6
    chinese = sum(has_chinese(row["instruction"]) for row in rows)
    assert 0 < chinese < len(rows)


def check_equation(row: dict[str, str]) -> str:
    """Recompute an answer from its operands; return the operator."""
    match = EQUATION.match(row["output"])
    assert match, row
    a, symbol, b, answer = match.groups()
    assert int(answer) == OPERATIONS[symbol](int(a), int(b)), row
    assert a in row["instruction"] and b in row["instruction"], row
    assert row["input"] == ""
    return symbol


def test_math_4op_answers_are_exactly_right():
    rows = math_4op(size=2000, seed=7)
    symbols = {check_equation(row) for row in rows}
    assert symbols == {"+", "-", "*", "/"}


def test_math_4op_asks_in_english_and_chinese():
    rows = math_4op(size=200, seed=1)
    chinese = sum(has_chinese(row["instruction"]) for row in rows)
    assert 0.3 * len(rows) <= chinese <= 0.7 * len(rows)
    assert len({row["instruction"] for row in rows}) > 150


def test_math_4op_is_deterministic_by_seed_and_honours_size():
    assert math_4op(size=50, seed=3) == math_4op(size=50, seed=3)
    assert math_4op(size=50, seed=3) != math_4op(size=50, seed=4)
    assert len(math_4op(size=1, seed=0)) == 1
    assert len(math_4op(size=123)) == 123
    assert math_4op(size=10, seed=3) == math_4op(size=50, seed=3)[:10]


@pytest.mark.parametrize("arguments", [{"size": 0}, {"size": -5}, {"size": "many"}, {"seed": 1.5}])
def test_math_4op_rejects_bad_arguments(arguments):
    with pytest.raises(ConfigError, match="math_4op"):
        math_4op(**arguments)


def test_run_generator_names_unknown_generators_and_arguments():
    assert GENERATORS["math_4op"] is math_4op
    assert len(run_generator("math_4op", {"size": 5})) == 5
    with pytest.raises(ConfigError, match="did you mean math_4op"):
        run_generator("math4op")
    with pytest.raises(ConfigError, match="unknown argument.*count"):
        run_generator("math_4op", {"count": 5})


def test_identity_loads_without_dataset_dir_with_placeholders_filled():
    examples = load("identity", identity_name="Ada", identity_author="Lovelace Labs")
    assert len(examples) == len(read_resource("identity.json"))
    answers = [last_answer(example) for example in examples]
    texts = [message["content"] for example in examples for message in example["messages"]]
    assert not any("{{" in text or "}}" in text for text in texts)
    assert all("Ada" in answer for answer in answers)
    assert any("Lovelace Labs" in answer and has_chinese(answer) for answer in answers)
    assert any("Lovelace Labs" in answer and not has_chinese(answer) for answer in answers)


def test_math_4op_loads_with_default_and_overridden_generator_args():
    assert len(load("math_4op")) == 2000
    examples = load("math_4op", generator_args="{size: 40, seed: 5}")
    assert len(examples) == 40
    expected = math_4op(size=40, seed=5)
    assert [last_answer(example) for example in examples] == [row["output"] for row in expected]


def test_preference_loads_as_pairs_for_the_rm_stage():
    examples = load("preference", stage="rm")
    rows = read_resource("preference.json")
    assert len(examples) == len(rows)
    for example, row in zip(examples, rows):
        assert example["chosen"]["content"] == row["chosen"]
        assert example["rejected"]["content"] == row["rejected"]
        assert example["messages"][-1]["role"] == "user"


def test_kto_demo_tags_each_preference_answer():
    rows, pairs = read_resource("kto_demo.json"), read_resource("preference.json")
    assert len(rows) == 2 * len(pairs)
    for pair, (chosen, rejected) in zip(pairs, zip(rows[::2], rows[1::2])):
        assert (chosen["output"], chosen["kto_tag"]) == (pair["chosen"], True)
        assert (rejected["output"], rejected["kto_tag"]) == (pair["rejected"], False)
    examples = load("kto_demo", stage="kto")
    assert [example["kto_tag"] for example in examples[:2]] == [True, False]

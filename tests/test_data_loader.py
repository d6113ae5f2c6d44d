"""load_examples: shared dataset folders load unchanged; bad rows are counted; mixing and splits are deterministic."""

import json
import logging
import sys
import types
from pathlib import Path

import pytest
from datasets import Dataset, IterableDataset

from glmtune.data.loader import load_examples
from glmtune.errors import ConfigError
from glmtune.hparams.data_args import DataArguments

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LLAMA_FACTORY = SHARED / "llama_factory"
CHATGLM_ET = SHARED / "chatglm_efficient_tuning"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared dataset folders not found at {SHARED}")


def load(stage: str = "sft", seed: int = 42, **settings):
    return load_examples(DataArguments(**settings), stage, seed)


def raw(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8"
    )
    return path


def numbered(prefix: str, count: int) -> list[dict]:
    return [{"instruction": f"{prefix}{index}", "output": f"answer {prefix}{index}"} for index in range(count)]


def prompts(dataset) -> list[str]:
    return [example["messages"][0]["content"] for example in dataset]


@needs_shared
@pytest.mark.parametrize(
    ("folder", "name", "stage"),
    [
        (LLAMA_FACTORY, "identity", "sft"),
        (LLAMA_FACTORY, "alpaca_en_demo", "sft"),
        (LLAMA_FACTORY, "alpaca_zh_demo", "sft"),
        (LLAMA_FACTORY, "dpo_en_demo", "rm"),
        (CHATGLM_ET, "self_cognition", "sft"),
        (CHATGLM_ET, "oaast_sft_zh", "sft"),
        (CHATGLM_ET, "oaast_rm_zh", "rm"),
    ],
)
def test_shared_folders_load_unchanged_through_their_dataset_info(folder, name, stage):
    loaded = load(stage, dataset=name, dataset_dir=str(folder))
    file = folder / json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))[name]["file_name"]
    assert isinstance(loaded.train, Dataset)
    assert len(loaded.train) == len(raw(file)) == loaded.report.read == loaded.report.kept
    assert not loaded.report.skipped
    assert loaded.validation is None
    assert loaded.train[0]["source"] == f"{file}[0]"


@needs_shared
@pytest.mark.parametrize(("folder", "name"), [(LLAMA_FACTORY, "identity"), (CHATGLM_ET, "self_cognition")])
def test_identity_placeholders_are_substituted(folder, name):
    loaded = load(dataset=name, dataset_dir=str(folder), identity_name="Ada", identity_author="Lovelace Labs")
    answers = [example["messages"][-1]["content"] for example in loaded.train]
    assert not any(marker in answer for answer in answers for marker in ("{{", "}}", "<NAME>", "<AUTHOR>"))
    originals = [row["output"] for row in raw(folder / f"{name}.json")]
    expected = [
        text.replace("{{name}}", "Ada")
        .replace("<NAME>", "Ada")
        .replace("{{author}}", "Lovelace Labs")
        .replace("<AUTHOR>", "Lovelace Labs")
        for text in originals
    ]
    assert answers == expected
    assert sum("Ada" in answer for answer in answers) > len(answers) / 2


@needs_shared
def test_oaast_sft_zh_history_becomes_earlier_messages():
    rows = raw(CHATGLM_ET / "oaast_sft_zh.json")
    index = next(i for i, row in enumerate(rows) if len(row["history"]) >= 2)
    example = load(dataset="oaast_sft_zh", dataset_dir=str(CHATGLM_ET)).train[index]
    expected = [text for pair in rows[index]["history"] for text in pair] + [
        rows[index]["instruction"],
        rows[index]["output"],
    ]
    assert [turn["content"] for turn in example["messages"]] == expected
    assert [turn["role"] for turn in example["messages"]] == ["user", "assistant"] * (len(expected) // 2)


@needs_shared
def test_pairwise_shared_datasets_end_on_a_user_turn_with_chosen_and_rejected():
    rows = raw(CHATGLM_ET / "oaast_rm_zh.json")
    rm = load("rm", dataset="oaast_rm_zh", dataset_dir=str(CHATGLM_ET)).train[0]
    assert rm["messages"][-1] == {"role": "user", "content": rows[0]["instruction"]}
    assert (rm["chosen"]["content"], rm["rejected"]["content"]) == tuple(rows[0]["output"][:2])
    dpo = load("rm", dataset="dpo_en_demo", dataset_dir=str(LLAMA_FACTORY)).train
    with_system = next(example for example in dpo if example["system"])
    assert with_system["messages"][-1]["role"] == "user"
    assert dpo[0]["chosen"]["role"] == "assistant" and dpo[0]["rejected"]["content"]


@needs_shared
def test_pairwise_data_needs_a_pairwise_stage():
    with pytest.raises(ConfigError, match="pairwise \\(ranking\\): stages that train on pairs: rm or dpo; not sft"):
        load("sft", dataset="dpo_en_demo", dataset_dir=str(LLAMA_FACTORY))
    with pytest.raises(
        ConfigError, match="'oaast_rm_zh' has no usable rows for stage sft.*775 skipped: column 'output' is a list"
    ):
        load("sft", dataset="oaast_rm_zh", dataset_dir=str(CHATGLM_ET))


def test_sha1_mismatch_stops_the_load(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", numbered("q", 2))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.jsonl", "file_sha1": "a" * 40}}))
    with pytest.raises(ConfigError, match=r"d\.jsonl has SHA-1 .* expects a{40}"):
        load(dataset="d", dataset_dir=str(tmp_path))


def test_every_bad_row_is_counted_with_its_location_and_reason(tmp_path, caplog):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"instruction": "ok 1", "output": "fine"},
            '{"instruction": "broken", ',
            {"instruction": "no answer"},
            {"instruction": "blank", "output": "   "},
            {"instruction": "ok 2", "output": "fine"},
        ],
    )
    with caplog.at_level(logging.INFO, logger="glmtune.data.loader"):
        loaded = load(dataset=str(path))
    report = loaded.report
    assert (report.read, report.kept, len(loaded.train)) == (5, 2, 2)
    assert report.skipped == {"malformed JSON line": 1, "missing column 'output'": 1, "empty response": 1}
    assert report.examples["malformed JSON line"] == [f"{path}:2"]
    assert report.examples["missing column 'output'"] == [f"{path}:3"]
    assert report.examples["empty response"] == [f"{path}:4"]
    assert f"{path}:2: malformed JSON line (column 27" in caplog.text
    assert "1 skipped: empty response" in report.summary()
    assert any(record.levelno == logging.WARNING and "2 kept" in record.getMessage() for record in caplog.records)


def test_broken_role_order_is_counted_with_file_index_and_message(tmp_path, caplog):
    rows = [
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
        {"conversations": [{"from": "gpt", "value": "I speak first"}, {"from": "human", "value": "hi"}]},
    ]
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="glmtune.data.loader"):
        loaded = load(dataset=str(path))
    assert loaded.report.skipped == {"broken role order": 1}
    assert loaded.report.examples["broken role order"] == [f"{path}[1]"]
    assert f"{path}[1]: broken role order (message 0: expected user or observation, got assistant)" in caplog.text
    assert len(loaded.train) == 1


def test_a_dataset_with_no_usable_rows_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "empty_answers.jsonl", [{"instruction": "q", "output": ""}])
    with pytest.raises(ConfigError, match="no usable rows for stage sft: 1 rows read; 0 kept.*empty response"):
        load(dataset=str(path))


def test_a_file_path_and_a_folder_work_as_datasets(tmp_path):
    folder = tmp_path / "qa"
    folder.mkdir()
    (folder / "part1.csv").write_text("q,a\nWhat is 2*3?,6\n", encoding="utf-8")
    write_jsonl(folder / "part2.jsonl", [{"q": "What is 1+1?", "a": "2"}])
    loaded = load(dataset=str(folder))
    assert [example["messages"][-1]["content"] for example in loaded.train] == ["6", "2"]
    assert loaded.train[0]["source"] == f"{folder / 'part1.csv'}:2"
    single = load(dataset=str(folder / "part2.jsonl"))
    assert prompts(single.train) == ["What is 1+1?"]


def test_unknown_dataset_suggests_close_names(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"alpaca_gpt4_zh": {"file_name": "a.json"}}))
    with pytest.raises(ConfigError, match=r"unknown dataset 'alpaca_gpt4_z' \(did you mean alpaca_gpt4_zh\?\)"):
        load(dataset="alpaca_gpt4_z", dataset_dir=str(tmp_path))


def test_plain_file_with_unknown_columns_asks_for_a_dataset_info_entry(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"foo": "x", "bar": "y"}])
    with pytest.raises(ConfigError, match=r"cannot tell the format of .*odd\.jsonl from its columns \['bar', 'foo'\]"):
        load(dataset=str(path))


def test_pretraining_text_from_txt_and_jsonl(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("first document\n\nsecond document\n", encoding="utf-8")
    write_jsonl(tmp_path / "c4.jsonl", [{"text": "third document"}])
    (tmp_path / "dataset_info.json").write_text(
        json.dumps({"c4": {"file_name": "c4.jsonl", "columns": {"prompt": "text"}}})
    )
    loaded = load("pt", dataset=f"{text},c4", dataset_dir=str(tmp_path))
    assert [example["text"] for example in loaded.train] == ["first document", "second document", "third document"]
    assert all(example["messages"] == [] for example in loaded.train)
    with pytest.raises(ConfigError, match="plain text: use it with stage pt, not sft"):
        load("sft", dataset=str(text))


def test_whole_file_entry_reads_each_text_file_as_one_document(tmp_path):
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_text("Chapter 1\n\nIt began.\n", encoding="utf-8")
    (tmp_path / "books" / "b.txt").write_text("Chapter 2\n", encoding="utf-8")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"books": {"file_name": "books", "whole_file": True}}))
    loaded = load("pt", dataset="books", dataset_dir=str(tmp_path))
    assert [example["text"] for example in loaded.train] == ["Chapter 1\n\nIt began.\n", "Chapter 2\n"]


def test_different_formats_mix_into_one_arrow_schema(tmp_path):
    write_jsonl(
        tmp_path / "alpaca.jsonl", [{"instruction": "a", "output": "b", "system": "S", "history": [["x", "y"]]}]
    )
    write_jsonl(
        tmp_path / "chat.jsonl",
        [{"messages": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}], "tools": "[]"}],
    )
    loaded = load(dataset=f"{tmp_path / 'alpaca.jsonl'},{tmp_path / 'chat.jsonl'}")
    assert [example["system"] for example in loaded.train] == ["S", None]
    assert [example["tools"] for example in loaded.train] == [None, "[]"]


@pytest.fixture
def two_datasets(tmp_path) -> str:
    write_jsonl(tmp_path / "a.jsonl", numbered("a", 30))
    write_jsonl(tmp_path / "b.jsonl", numbered("b", 10))
    return f"{tmp_path / 'a.jsonl'},{tmp_path / 'b.jsonl'}"


def test_concat_keeps_order_and_max_samples_applies_per_dataset(two_datasets):
    assert prompts(load(dataset=two_datasets).train) == [f"a{i}" for i in range(30)] + [f"b{i}" for i in range(10)]
    limited = load(dataset=two_datasets, max_samples=4)
    assert prompts(limited.train) == ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3"]
    assert (limited.report.read, limited.report.kept) == (8, 8)


def test_interleave_under_is_deterministic_and_counts_rows_left_out(two_datasets):
    settings = {"dataset": two_datasets, "mix_strategy": "interleave_under", "interleave_probs": "0.5,0.5"}
    first, again, other = load(seed=1, **settings), load(seed=1, **settings), load(seed=2, **settings)
    assert prompts(first.train) == prompts(again.train)
    assert prompts(first.train) != prompts(other.train)
    mixed = prompts(first.train)
    assert sum(prompt.startswith("b") for prompt in mixed) == 10  # stops when b runs out
    left_out = sum(
        count for reason, count in first.report.skipped.items() if reason.startswith("left out by interleave_under")
    )
    assert left_out == 40 - len(mixed) and first.report.kept == len(mixed)
    assert first.report.read == first.report.kept + sum(first.report.skipped.values())


def test_interleave_over_draws_until_every_dataset_is_exhausted(two_datasets):
    loaded = load(dataset=two_datasets, mix_strategy="interleave_over", interleave_probs="0.5,0.5", seed=3)
    assert {f"a{i}" for i in range(30)} | {f"b{i}" for i in range(10)} == set(prompts(loaded.train))
    assert len(loaded.train) > 40
    with pytest.raises(ConfigError, match="3 numbers for 2 datasets"):
        load(dataset=two_datasets, mix_strategy="interleave_over", interleave_probs="0.2,0.3,0.5")


@pytest.mark.parametrize(("val_size", "expected"), [(0.25, 10), (7, 7)])
def test_val_size_fraction_or_count_splits_deterministically(two_datasets, val_size, expected):
    first = load(dataset=two_datasets, val_size=val_size, seed=5)
    again = load(dataset=two_datasets, val_size=val_size, seed=5)
    other = load(dataset=two_datasets, val_size=val_size, seed=6)
    assert len(first.validation) == expected and len(first.train) == 40 - expected
    assert set(prompts(first.train)).isdisjoint(prompts(first.validation))
    assert prompts(first.validation) == prompts(again.validation)
    assert prompts(first.train) == prompts(again.train)
    assert prompts(first.validation) != prompts(other.validation)


def test_val_size_must_leave_training_rows_and_excludes_eval_dataset(two_datasets):
    with pytest.raises(ConfigError, match="leaves no training rows"):
        load(dataset=two_datasets, val_size=40)
    with pytest.raises(ConfigError, match="keep one"):
        load(dataset=two_datasets, val_size=0.1, eval_dataset=two_datasets)


def test_eval_dataset_becomes_the_validation_set(two_datasets, tmp_path):
    write_jsonl(tmp_path / "held_out.jsonl", numbered("h", 3))
    loaded = load(dataset=two_datasets, eval_dataset=str(tmp_path / "held_out.jsonl"))
    assert len(loaded.train) == 40 and prompts(loaded.validation) == ["h0", "h1", "h2"]
    assert loaded.report.kept == 43
    only_eval = load(eval_dataset=str(tmp_path / "held_out.jsonl"))
    assert only_eval.train is None and len(only_eval.validation) == 3


def test_streaming_reads_lazily_and_counts_as_it_goes(tmp_path):
    path = write_jsonl(tmp_path / "big.jsonl", numbered("s", 20)[:10] + ["not json"] + numbered("t", 10))
    loaded = load(dataset=str(path), streaming=True, val_size=4, seed=1)
    assert isinstance(loaded.train, IterableDataset) and isinstance(loaded.validation, IterableDataset)
    assert loaded.report.read == 0
    validation, train = prompts(loaded.validation), prompts(loaded.train)
    assert len(validation) == 4 and len(train) == 16 and set(validation).isdisjoint(train)
    assert validation == prompts(load(dataset=str(path), streaming=True, val_size=4, seed=1).validation)
    assert (loaded.report.read, loaded.report.kept) == (21, 20)
    assert loaded.report.skipped == {"malformed JSON line": 1}
    assert loaded.report.examples["malformed JSON line"] == [f"{path}:11"]
    assert len(prompts(loaded.train)) == 16  # a second epoch reads the file again but counts nothing twice
    assert (loaded.report.read, loaded.report.kept) == (21, 20)


def test_streaming_interleave_is_deterministic(two_datasets):
    settings = {
        "dataset": two_datasets,
        "streaming": True,
        "mix_strategy": "interleave_under",
        "interleave_probs": "0.7,0.3",
    }
    first = prompts(load(seed=4, **settings).train)
    assert first == prompts(load(seed=4, **settings).train)
    assert sum(prompt.startswith("b") for prompt in first) == 10


def test_streaming_max_samples_and_fractional_val_size(tmp_path):
    path = write_jsonl(tmp_path / "big.jsonl", numbered("s", 20))
    assert prompts(load(dataset=str(path), streaming=True, max_samples=3).train) == ["s0", "s1", "s2"]
    with pytest.raises(ConfigError, match="give a row count"):
        load(dataset=str(path), streaming=True, val_size=0.1)


@pytest.fixture
def fake_generator(monkeypatch, tmp_path) -> Path:
    """A generated dataset registered in a dataset_info.json, without depending on the real generators."""

    def countdown(size: int = 2, start: int = 10) -> list[dict]:
        return [{"instruction": f"count {start - i}", "input": "", "output": str(start - i)} for i in range(size)]

    fake = types.ModuleType("glmtune.data.generators")
    fake.GENERATORS = {"countdown": countdown}
    fake.run_generator = lambda name, arguments=None: fake.GENERATORS[name](**(arguments or {}))
    monkeypatch.setitem(sys.modules, "glmtune.data.generators", fake)
    entry = {"countdown": {"generator": "countdown", "generator_args": {"size": 3}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(entry), encoding="utf-8")
    return tmp_path


def test_generated_dataset_rows_with_overridden_arguments(fake_generator):
    loaded = load(dataset="countdown", dataset_dir=str(fake_generator))
    assert prompts(loaded.train) == ["count 10", "count 9", "count 8"]
    assert loaded.train[0]["source"] == "countdown[0]"
    overridden = load(dataset="countdown", dataset_dir=str(fake_generator), generator_args="{size: 2, start: 5}")
    assert prompts(overridden.train) == ["count 5", "count 4"]


def test_unknown_stage_is_an_error(two_datasets):
    with pytest.raises(ConfigError, match="unknown stage 'rlhf'"):
        load("rlhf", dataset=two_datasets)

"""The preprocessed-data cache: hits return the same data, any changed input misses, overwrite_cache rebuilds."""

from pathlib import Path

import pytest
from datasets import Dataset
from transformers import AutoTokenizer

from glmtune.data.cache import cache_key, cache_root, cached_encode, dataset_digest
from glmtune.data.shapes import encode_dataset
from glmtune.data.templates import get_template
from glmtune.hparams.data_args import DataArguments

MARKER = "written-by-the-test"


def rows(answer: str = "Paris.") -> list[dict]:
    question = {"role": "user", "content": "What is the capital of France?"}
    long_answer = {"role": "assistant", "content": "法国的首都是巴黎。" * 8}
    return [
        {"messages": [question, {"role": "assistant", "content": answer}], "system": "", "source": "qa.jsonl:1"},
        {"messages": [], "system": "", "source": "qa.jsonl:2"},
        {"messages": [question, long_answer], "system": "", "source": "qa.jsonl:3"},
    ]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GLMTUNE_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def entries() -> list[Path]:
    return sorted(path for path in cache_root().iterdir() if not path.name.startswith("."))


def mark(entry: Path) -> None:
    (entry / MARKER).write_text("")


def run(dataset: Dataset, tokenizer, **args) -> tuple[Dataset, object]:
    return cached_encode(dataset, "supervised", get_template("qwen"), tokenizer, DataArguments(cutoff_len=32, **args))


def test_a_hit_returns_the_same_data_and_report_without_rebuilding(tokenizer, home):
    dataset = Dataset.from_list(rows())
    args = DataArguments(cutoff_len=32)
    fresh, fresh_report = encode_dataset(dataset, "supervised", get_template("qwen"), tokenizer, args)
    first, first_report = run(dataset, tokenizer)
    (entry,) = entries()
    assert entry.parent == home / "cache" / "preprocessed" and entry.name.startswith("supervised-")
    mark(entry)
    second, second_report = run(Dataset.from_list(rows()), tokenizer)
    assert (entry / MARKER).exists(), "a hit must not rewrite the entry"
    assert first.to_dict() == second.to_dict() == fresh.to_dict()
    assert first.features == fresh.features
    assert first_report == second_report == fresh_report
    assert first_report.truncated == 1 and first_report.skipped == {"empty conversation": 1}
    assert all(Path(file["filename"]).is_relative_to(entry) for file in second.cache_files)


def test_a_changed_input_misses_the_cache(tokenizer):
    first, _ = run(Dataset.from_list(rows()), tokenizer)
    second, _ = run(Dataset.from_list(rows(answer="Lyon.")), tokenizer)
    assert len(entries()) == 2
    assert first["input_ids"] != second["input_ids"]


@pytest.mark.parametrize(
    "change",
    [
        {"cutoff_len": 64},
        {"train_on_prompt": True},
        {"mask_history": True},
        {"skip_overlength": True},
        {"packing": True},
        {"default_system": "Be brief."},
    ],
)
def test_every_output_argument_is_part_of_the_key(tokenizer, change):
    dataset = Dataset.from_list(rows())
    template = get_template("qwen")
    base = cache_key(dataset, "supervised", template, tokenizer, DataArguments())
    assert cache_key(dataset, "supervised", template, tokenizer, DataArguments(**change)) != base
    assert cache_key(dataset, "supervised", template, tokenizer, DataArguments(preprocessing_num_workers=2)) == base


def test_template_tokenizer_and_data_shape_are_part_of_the_key(tiny_tokenizer_dir, tokenizer):
    dataset = Dataset.from_list(rows())
    base = cache_key(dataset, "supervised", get_template("qwen"), tokenizer, DataArguments())
    assert cache_key(dataset, "supervised", get_template("smollm2"), tokenizer, DataArguments()) != base
    assert cache_key(dataset, "text", get_template("qwen"), tokenizer, DataArguments()) != base
    changed = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    changed.add_tokens(["Paris"])
    assert cache_key(dataset, "supervised", get_template("qwen"), changed, DataArguments()) != base
    same = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    assert cache_key(dataset, "supervised", get_template("qwen"), same, DataArguments()) == base


def test_the_content_hash_follows_rows_not_storage(tmp_path):
    dataset = Dataset.from_list(rows() * 3)
    assert dataset_digest(dataset.select(range(3))) == dataset_digest(Dataset.from_list(rows()))
    assert dataset_digest(dataset.select([0, 1, 2])) != dataset_digest(dataset.select([1, 0, 2]))
    dataset.save_to_disk(str(tmp_path / "saved"))
    assert dataset_digest(Dataset.load_from_disk(str(tmp_path / "saved"))) == dataset_digest(dataset)


def test_overwrite_cache_rebuilds_the_entry(tokenizer):
    dataset = Dataset.from_list(rows())
    first, _ = run(dataset, tokenizer)
    (entry,) = entries()
    mark(entry)
    rebuilt, _ = run(dataset, tokenizer, overwrite_cache=True)
    assert entries() == [entry] and not (entry / MARKER).exists()
    assert rebuilt.to_dict() == first.to_dict()
    assert not [path for path in cache_root().iterdir() if path.name.startswith(".")], "no staging folders left"


def test_an_unfinished_staging_folder_is_never_read(tokenizer):
    dataset = Dataset.from_list(rows())
    key = cache_key(dataset, "supervised", get_template("qwen"), tokenizer, DataArguments(cutoff_len=32))
    staging = cache_root() / f".{key}.interrupted"
    staging.mkdir(parents=True)
    (staging / "report.json").write_text("{not json")
    processed, report = run(dataset, tokenizer)
    assert len(processed) == 2 and report.read == 3
    assert (cache_root() / key / "dataset").is_dir()


def test_a_run_that_keeps_no_sample_says_so_instead_of_caching_an_empty_set(tmp_path, monkeypatch, tiny_tokenizer_dir):
    """`datasets` cannot load an empty dataset back from disk: an empty result is returned, never cached."""
    from glmtune.data.pipeline import build_tokenized_data
    from glmtune.errors import ConfigError
    from glmtune.stages import STAGES

    monkeypatch.setenv("GLMTUNE_HOME", str(tmp_path))
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    args = DataArguments(dataset="identity", cutoff_len=4, skip_overlength=True, template="qwen")
    with pytest.raises(ConfigError, match="no training sample is left.*skipped: longer than cutoff_len"):
        build_tokenized_data(args, STAGES["sft"], get_template("qwen"), tokenizer, 42)
    assert not list((tmp_path / "cache" / "preprocessed").glob("supervised-*"))

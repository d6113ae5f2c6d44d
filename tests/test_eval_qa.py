"""`glmtune eval --task qa`: alias matching, the bundled retention sets, and --compare_base on a tiny adapter."""

import csv
import json
from pathlib import Path

import pytest
from tiny_models import make_lora_adapter

from glmtune.cli import main as cli_main
from glmtune.errors import ConfigError, GlmtuneError
from glmtune.eval.benchmarks import load_mcq, load_qa
from glmtune.eval.qa import contains_alias, exact_alias, normalise


@pytest.mark.parametrize(
    ("reply", "aliases", "expected"),
    [
        ("The capital of France is Paris.", ["Paris"], True),
        ("paris", ["Paris"], True),
        ("It is Parisian food.", ["Paris"], False),  # whole words only
        ("There are 14 of them.", ["4"], False),
        ("一天有24小时。", ["24", "二十四"], True),
        ("中国的首都是北京。", ["北京"], True),
        ("中国的首都是上海。", ["北京"], False),
        ("ＰＡＲＩＳ！", ["Paris"], True),  # full-width letters
        ("A blue whale.", ["blue whale", "whale"], True),
        ("It is New Delhi.", ["New Delhi", "Delhi"], True),
        ("Washington, D.C.", ["Washington"], True),
    ],
)
def test_contains_alias(reply: str, aliases: list[str], expected: bool):
    assert contains_alias(reply, aliases) is expected


def test_normalise_and_exact_match():
    assert normalise("  The  Pacific   Ocean! ") == "pacific ocean"
    assert exact_alias("The Moon.", ["moon"]) and not exact_alias("The Moon is bright.", ["moon"])


def test_qa_files_need_answers(tmp_path: Path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "2+2?", "answer": "4"}\n{"question": "1+1?", "answers": []}\n', encoding="utf-8")
    with pytest.raises(GlmtuneError, match="row 1: needs a question and answers"):
        load_qa(str(path))
    path.write_text('{"question": "2+2?", "answer": "4"}\n', encoding="utf-8")
    assert load_qa(str(path))[0].aliases == ("4",)


def test_bundled_retention_sets_are_big_bilingual_and_well_formed():
    qa = load_qa("retention_qa")
    assert len(qa) >= 200 and len({q.question for q in qa}) == len(qa)
    assert {q.subject.rsplit("_", 1)[1] for q in qa} == {"en", "zh"}
    assert all(normalise(alias) for q in qa for alias in q.aliases)  # no alias normalises away ("A", "the")
    questions, shots = load_mcq("retention_mcq", "test", 5)
    scored = [q for items in questions.values() for q in items]
    assert len(scored) >= 200 and all(len(q.options) == 4 and len(set(q.options)) == 4 for q in scored)
    assert all(len(shots[subject]) == 5 for subject in questions)
    assert len({q.answer for q in scored}) == 4  # the right answer is not always in one place


def test_bundled_sets_ship_as_package_data():
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert 'glmtune = ["resources/**/*"]' in pyproject
    assert list(csv.reader((Path(__file__).resolve().parents[1] / "src/glmtune/resources/retention/mcq/test/geography_en_test.csv").open()))[0][:2] == ["id", "question"]


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("qa") / "qa.json"
    rows = [{"subject": "en", "question": "What is the capital of France?", "answers": ["Paris"]},
            {"subject": "zh", "question": "法国的首都是哪里？", "answers": ["巴黎"]},
            {"subject": "en", "question": "1 + 2 = ?", "answers": ["3", "three"]}]  # fmt: skip
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def test_qa_cli_writes_predictions_and_results(tiny_llama_dir: Path, qa_file: Path, tmp_path: Path):
    argv = ["eval", "--task", "qa", "--model", str(tiny_llama_dir), "--template", "qwen", "--dataset", str(qa_file),
            "--max_new_tokens", "6", "--output_dir", str(tmp_path)]  # fmt: skip
    assert cli_main(argv) == 0
    results = json.loads((tmp_path / "qa_results.json").read_text(encoding="utf-8"))
    assert results["num_questions"] == 3 and set(results["subjects"]) == {"en", "zh"} and "exact_match" in results
    lines = [json.loads(line) for line in (tmp_path / "qa_predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["label"] for line in lines] == ["Paris", "巴黎", "3 | three"]


@pytest.mark.parametrize("task", ["qa", "mcq"])
def test_compare_base_reports_both_and_retention(tiny_llama_dir: Path, qa_file: Path, tmp_path: Path, capsys, task: str):
    adapter = tmp_path / "adapter"
    make_lora_adapter(tiny_llama_dir, adapter, seed=3)
    dataset = str(qa_file) if task == "qa" else "retention_mcq"
    argv = ["eval", "--task", task, "--model", str(tiny_llama_dir), "--template", "qwen", "--dataset", dataset,
            "--adapter", str(adapter), "--compare_base", "--max_samples", "2", "--n_shot", "1", "--max_new_tokens", "6",
            "--output_dir", str(tmp_path / "out")]  # fmt: skip
    assert cli_main(argv) == 0
    results = json.loads((tmp_path / "out" / f"{task}_results.json").read_text(encoding="utf-8"))
    assert results["base"]["num_questions"] == results["num_questions"]
    ratio = results["retention"]["accuracy"]
    assert ratio is None if results["base"]["accuracy"] == 0 else ratio == round(100 * results["accuracy"] / results["base"]["accuracy"], 2)
    assert (tmp_path / "out" / f"base_{task}_predictions.jsonl").is_file()
    base_lines = (tmp_path / "out" / f"base_{task}_predictions.jsonl").read_text(encoding="utf-8")
    tuned_lines = (tmp_path / "out" / f"{task}_predictions.jsonl").read_text(encoding="utf-8")
    assert base_lines != tuned_lines  # the adapter changed what the model says
    assert "retention" in capsys.readouterr().out


def test_compare_base_needs_an_adapter_and_an_accuracy_task(tiny_llama_dir: Path, qa_file: Path):
    with pytest.raises(ConfigError, match="give --adapter_name_or_path"):
        from glmtune.hparams.entry import get_eval_args

        get_eval_args(["--task", "qa", "--dataset", str(qa_file), "--compare_base"])
    assert cli_main(["eval", "--dataset", str(qa_file), "--compare_base", "--adapter", "x"]) == 2


def test_qa_task_answers_briefly_by_default():
    from glmtune.hparams.entry import get_eval_args

    assert get_eval_args(["--task", "qa", "--dataset", "retention_qa"])[3].max_new_tokens == 48
    assert get_eval_args(["--task", "qa", "--dataset", "retention_qa", "--max_new_tokens", "9"])[3].max_new_tokens == 9
    assert get_eval_args(["--dataset", "retention_qa"])[4].task == "generate"  # the default task is unchanged


def test_bleed_counts_replies_that_mention_the_identity():
    from glmtune.eval.bleed import bleed

    replies = [("Capital of Russia?", "The capital of Russia is Lumen Lab."), ("2+2?", "4"), ("火星？", "火星是AURORA")]
    assert bleed(replies, ["Aurora", "Lumen Lab"]) == {"words": ["Aurora", "Lumen Lab"], "count": 2, "questions": ["Capital of Russia?", "火星？"]}


def test_identity_words_come_from_the_settings_else_the_adapters_training(tmp_path: Path):
    from glmtune.eval.bleed import identity_words
    from glmtune.hparams import DataArguments

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    assert identity_words(DataArguments(), str(adapter)) == []  # no train_config.yaml, no identity
    (adapter / "train_config.yaml").write_text("dataset: identity\nidentity_name: Aurora\nidentity_author: Lumen Lab\n", encoding="utf-8")
    assert identity_words(DataArguments(), str(adapter)) == ["Aurora", "Lumen Lab"]
    assert identity_words(DataArguments(identity_name="Nova"), str(adapter)) == ["Nova"]
    (adapter / "train_config.yaml").write_text("dataset: alpaca\nidentity_name: glmtune\n", encoding="utf-8")
    assert identity_words(DataArguments(), str(adapter)) == []  # the defaults: no identity was taught


def test_qa_results_report_bleed_for_a_fine_tune_taught_an_identity(tiny_llama_dir: Path, qa_file: Path, tmp_path: Path, capsys):
    adapter = tmp_path / "adapter"
    make_lora_adapter(tiny_llama_dir, adapter, seed=3)
    (adapter / "train_config.yaml").write_text("identity_name: Aurora\nidentity_author: Lumen Lab\n", encoding="utf-8")
    argv = ["eval", "--task", "qa", "--model", str(tiny_llama_dir), "--template", "qwen", "--dataset", str(qa_file),
            "--adapter", str(adapter), "--compare_base", "--max_new_tokens", "6", "--output_dir", str(tmp_path / "out")]  # fmt: skip
    assert cli_main(argv) == 0
    results = json.loads((tmp_path / "out" / "qa_results.json").read_text(encoding="utf-8"))
    assert results["bleed"]["words"] == ["Aurora", "Lumen Lab"] and results["bleed"]["count"] == 0
    assert results["base"]["bleed"]["count"] == 0
    assert "identity bleed: 0 replies mention Aurora or Lumen Lab" in capsys.readouterr().out

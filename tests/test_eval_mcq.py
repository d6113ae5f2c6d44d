"""`glmtune eval --task mcq` on tiny C-Eval, MMLU and CMMLU folders written here, scored by a tiny random model."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from glmtune.chat.chat_model import ChatModel
from glmtune.cli import main as cli_main
from glmtune.errors import GlmtuneError
from glmtune.eval.benchmarks import Question, load_mcq
from glmtune.eval.choice import answer_span, candidates, choose, span_log_probs
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments
from glmtune.hparams.entry import get_eval_args

QUESTIONS = [
    ("What is the capital of France?", "Paris", "Rome", "Berlin", "Madrid", "A"),
    ("1 + 2 = ?", "4", "3", "5", "12", "B"),
    ("法国的首都是哪里？", "罗马", "柏林", "巴黎", "东京", "C"),
    ("Which is a colour?", "dog", "seven", "table", "red", "D"),
]


def write_csv(path: Path, header: list[str] | None, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def ceval_folder(root: Path) -> Path:
    """C-Eval: id,question,A,B,C,D,answer,explanation in dev/val; test without answers."""
    header = ["id", "question", "A", "B", "C", "D", "answer", "explanation"]
    for subject in ("geography", "maths"):
        rows = [[str(i), *row, "because"] for i, row in enumerate(QUESTIONS)]
        write_csv(root / "dev" / f"{subject}_dev.csv", header, rows[:2])
        write_csv(root / "val" / f"{subject}_val.csv", header, rows)
        write_csv(root / "test" / f"{subject}_test.csv", header[:6], [row[:6] for row in rows])
    return root


def mmlu_folder(root: Path) -> Path:
    """MMLU: headerless question,A,B,C,D,answer files under data/dev and data/test."""
    for subject in ("world_facts",):
        write_csv(root / "data" / "dev" / f"{subject}_dev.csv", None, [list(row) for row in QUESTIONS[:2]])
        write_csv(root / "data" / "test" / f"{subject}_test.csv", None, [list(row) for row in QUESTIONS])
    return root


def cmmlu_folder(root: Path) -> Path:
    """CMMLU: `,Question,A,B,C,D,Answer` files named by subject alone in dev/ and test/."""
    header = ["", "Question", "A", "B", "C", "D", "Answer"]
    write_csv(root / "dev" / "agronomy.csv", header, [[str(i), *row] for i, row in enumerate(QUESTIONS[:2])])
    write_csv(root / "test" / "agronomy.csv", header, [[str(i), *row] for i, row in enumerate(QUESTIONS)])
    return root


@pytest.fixture(scope="module")
def chat_model(tiny_llama_dir: Path) -> ChatModel:
    return ChatModel.from_args(ModelArguments(model_name_or_path=str(tiny_llama_dir)), DataArguments(template="qwen"), GeneratingArguments())


def test_the_three_layouts_read_to_the_same_questions(tmp_path: Path):
    ceval, _ = load_mcq(str(ceval_folder(tmp_path / "ceval")), "val", 2)
    mmlu, mmlu_shots = load_mcq(str(mmlu_folder(tmp_path / "mmlu")), "test", 5)
    cmmlu, _ = load_mcq(str(cmmlu_folder(tmp_path / "cmmlu")), "test", 1)
    assert set(ceval) == {"geography", "maths"} and set(mmlu) == {"world_facts"} and set(cmmlu) == {"agronomy"}
    for questions in (ceval["geography"], mmlu["world_facts"], cmmlu["agronomy"]):
        assert [(q.question, q.options, q.answer) for q in questions] == [(r[0], r[1:5], "ABCD".index(r[5])) for r in QUESTIONS]
    assert len(mmlu_shots["world_facts"]) == 2  # n_shot larger than dev: all of dev


def test_hidden_test_answers_and_bad_rows_say_what_to_do(tmp_path: Path):
    root = ceval_folder(tmp_path / "ceval")
    with pytest.raises(GlmtuneError, match="--split val"):
        load_mcq(str(root), "test", 0)
    write_csv(root / "val" / "maths_val.csv", ["id", "question", "A", "B", "C", "D", "answer"], [["0", "q", "a", "b", "c", "d", "E"]])
    with pytest.raises(GlmtuneError, match=r"maths_val.csv:2: answer 'E' is not one of ABCD"):
        load_mcq(str(root), "val", 0)
    with pytest.raises(GlmtuneError, match="--n_shot 0"):
        load_mcq(str(write_only_test(tmp_path / "nodev")), "test", 1)


def write_only_test(root: Path) -> Path:
    write_csv(root / "test" / "x_test.csv", None, [list(QUESTIONS[0])])
    return root


def test_answer_span_drops_the_template_around_the_answer():
    assert answer_span([7, 8, 1, 2], [1, 2]) == [7, 8]
    assert answer_span([5, 7, 1, 2], [5, 1, 2]) == [7]


def test_cloze_candidates_score_only_option_text(chat_model: ChatModel):
    question = Question("geo", "Capital of France?", ("Paris", "Rome"), 0)
    found = candidates(chat_model, 0, question, [], "cloze", cutoff_len=1024)
    tokenizer = chat_model.tokenizer
    assert [tokenizer.decode(list(c.span)) for c in found] == ["Paris", "Rome"]
    assert tokenizer.decode(list(found[0].prompt)).endswith("Capital of France?<|im_end|>\n<|im_start|>assistant\n")
    letters = candidates(chat_model, 0, question, [question], "letter", cutoff_len=1024)
    assert [tokenizer.decode(list(c.span)) for c in letters] == ["A", "B"]
    assert letters[0].prompt == letters[1].prompt  # letters share one prompt, hence one forward row
    assert "multiple choice questions" in tokenizer.decode(list(letters[0].prompt))


def test_batched_log_probs_equal_one_by_one(chat_model: ChatModel, tmp_path: Path):
    questions, shots = load_mcq(str(ceval_folder(tmp_path)), "val", 2)
    pending = [c for i, q in enumerate(questions["geography"]) for c in candidates(chat_model, i, q, shots["geography"], "cloze", 1024)]
    batched = span_log_probs(chat_model.model, pending, batch_size=16, pad_id=0)
    single = [span_log_probs(chat_model.model, [c], batch_size=1, pad_id=0)[0] for c in pending]
    assert [len(p) for p in batched] == [len(c.span) for c in pending]
    for ours, theirs in zip(batched, single):
        assert ours == pytest.approx(theirs, abs=1e-4)


@pytest.mark.parametrize("scoring", ["cloze", "letter"])
def test_choose_is_deterministic_and_batch_independent(chat_model: ChatModel, tmp_path: Path, scoring: str):
    questions, shots = load_mcq(str(mmlu_folder(tmp_path)), "test", 2)
    items = questions["world_facts"]
    first = choose(chat_model, items, shots, scoring, batch_size=8, cutoff_len=1024)
    assert first == choose(chat_model, items, shots, scoring, batch_size=1, cutoff_len=1024)
    assert all(0 <= pick < 4 for pick in first)


@pytest.mark.parametrize(("layout", "split", "scoring"), [("ceval", "val", "cloze"), ("mmlu", "test", "letter")])
def test_cli_writes_results_table_and_config(tiny_llama_dir: Path, tmp_path: Path, capsys, layout: str, split: str, scoring: str):
    folder = {"ceval": ceval_folder, "mmlu": mmlu_folder}[layout](tmp_path / layout)
    out = tmp_path / "out"
    argv = ["eval", "--task", "mcq", "--model", str(tiny_llama_dir), "--template", "qwen", "--dataset", str(folder),
            "--split", split, "--scoring", scoring, "--n_shot", "1", "--output_dir", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    results = json.loads((out / "mcq_results.json").read_text(encoding="utf-8"))
    assert results["scoring"] == scoring and results["split"] == split and results["n_shot"] == 1
    subjects = results["subjects"]
    assert sum(counts["total"] for counts in subjects.values()) == results["num_questions"] == 4 * len(subjects)
    assert 0 <= results["accuracy"] <= 100
    lines = (out / "mcq_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == results["num_questions"] and set(json.loads(lines[0])) >= {"subject", "predict", "label", "correct"}
    printed = capsys.readouterr().out
    assert "all questions" in printed and all(name in printed for name in subjects)
    config = yaml.safe_load((out / "eval_config.yaml").read_text(encoding="utf-8"))
    assert config["task"] == "mcq" and config["scoring"] == scoring and config["output_dir"] == str(out)
    again = get_eval_args([str(out / "eval_config.yaml")])  # the saved config evaluates the same way
    assert again[4] == get_eval_args(argv[1:])[4] and again[0] == get_eval_args(argv[1:])[0]
    assert again[2].output_dir == str(out) and again[2].per_device_eval_batch_size == 8

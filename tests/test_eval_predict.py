"""Predict with generate on a tiny random model: determinism, batching, the two result files, the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import subprocess_env

from glmtune.chat.chat_model import ChatModel
from glmtune.cli import main as cli_main
from glmtune.eval.predict import generate_predictions
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments

ROWS = [
    {"instruction": "What is the capital of France?", "input": "", "output": "The capital of France is Paris."},
    {"instruction": "法国的首都是哪里？", "input": "", "output": "法国的首都是巴黎。"},
    {"instruction": "1 + 2 = ?", "input": "", "output": "1 + 2 = 3"},
    {"instruction": "Hello!", "input": "Answer briefly.", "output": "Hello! How can I help you today?"},
    {"instruction": "12 * 7", "input": "", "output": "12 * 7 = 84"},
]
RESULT_KEYS = {
    "bleu-4", "rouge-1", "rouge-2", "rouge-l", "eval_loss", "num_samples", "num_truncated_prompts", "runtime_seconds", "samples_per_second",
}  # fmt: skip


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a dataset_info.json naming `qa`, the way the web UI passes --dataset and --dataset_dir."""
    directory = tmp_path_factory.mktemp("eval-data")
    (directory / "qa.json").write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    (directory / "empty.json").write_text("[]", encoding="utf-8")
    info = {"qa": {"file_name": "qa.json"}, "empty": {"file_name": "empty.json"}}
    (directory / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def examples(dataset_dir: Path) -> list:
    from glmtune.eval.runner import held_out_examples

    return held_out_examples(DataArguments(dataset="qa", dataset_dir=str(dataset_dir), template="qwen"), seed=42)


@pytest.fixture(scope="module")
def chat_model(tiny_llama_dir: Path) -> ChatModel:
    return ChatModel.from_args(
        ModelArguments(model_name_or_path=str(tiny_llama_dir)),
        DataArguments(template="qwen"),
        GeneratingArguments(do_sample=False, max_new_tokens=12),
    )


def eval_argv(model_dir: Path, dataset_dir: Path, output_dir: Path, dataset: str = "qa") -> list[str]:
    """Exactly the flags the web UI passes to `glmtune eval`."""
    return [
        "--model_name_or_path", str(model_dir), "--dataset", dataset, "--dataset_dir", str(dataset_dir),
        "--template", "qwen", "--max_samples", "4", "--max_new_tokens", "8", "--output_dir", str(output_dir),
    ]  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_greedy_predictions_are_deterministic(chat_model: ChatModel, examples: list):
    first = generate_predictions(chat_model, examples, batch_size=2)
    second = generate_predictions(chat_model, examples, batch_size=2)
    assert first == second
    assert any(prediction.predict for prediction in first)


def test_batched_predictions_equal_one_by_one(chat_model: ChatModel, examples: list):
    batched = generate_predictions(chat_model, examples, batch_size=len(examples))
    single = generate_predictions(chat_model, examples, batch_size=1)
    assert batched == single
    assert [prediction.label for prediction in batched] == [row["output"] for row in ROWS]  # dataset order kept


def test_prompt_is_the_rendered_template(chat_model: ChatModel, examples: list):
    prediction = generate_predictions(chat_model, examples[:1], batch_size=1)[0]
    assert prediction.prompt.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")


def test_cli_writes_predictions_and_results(tiny_llama_dir: Path, dataset_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "eval"
    assert cli_main(["eval", *eval_argv(tiny_llama_dir, dataset_dir, out), "--per_device_eval_batch_size", "3"]) == 0
    lines = read_jsonl(out / "generated_predictions.jsonl")
    assert len(lines) == 4 and all(set(line) == {"prompt", "label", "predict"} for line in lines)
    assert [line["label"] for line in lines] == [row["output"] for row in ROWS[:4]]
    results = json.loads((out / "predict_results.json").read_text(encoding="utf-8"))
    assert set(results) == RESULT_KEYS and results["num_samples"] == 4
    assert all(0 <= results[name] <= 100 for name in ("bleu-4", "rouge-1", "rouge-2", "rouge-l"))
    assert 0 < results["eval_loss"] < 20  # a random tiny model: about ln(vocab size)
    assert "eval summary: 4 samples" in capsys.readouterr().out
    assert not list(out.glob(".*.tmp")), "temporary files must be renamed away"


def test_val_size_predicts_on_the_held_out_split(tiny_llama_dir: Path, dataset_dir: Path, tmp_path: Path):
    out = tmp_path / "eval"
    assert cli_main(["eval", *eval_argv(tiny_llama_dir, dataset_dir, out), "--val_size", "2"]) == 0
    assert len(read_jsonl(out / "generated_predictions.jsonl")) == 2


def test_web_ui_command_line_in_a_subprocess(tiny_llama_dir: Path, dataset_dir: Path, tmp_path: Path):
    out = tmp_path / "eval"
    command = [sys.executable, "-m", "glmtune", "eval", *eval_argv(tiny_llama_dir, dataset_dir, out)]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(tmp_path / "home"), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(read_jsonl(out / "generated_predictions.jsonl")) == 4
    assert json.loads((out / "predict_results.json").read_text(encoding="utf-8"))["num_samples"] == 4
    assert "Building prefix dict" not in result.stderr  # jieba stays quiet


@pytest.mark.parametrize(
    ("dataset", "message"),
    [("nope", "unknown dataset 'nope'"), ("empty", "dataset 'empty' has no usable rows")],
)
def test_bad_dataset_is_a_clear_error(tiny_llama_dir: Path, dataset_dir: Path, tmp_path: Path, capsys, dataset: str, message: str):
    assert cli_main(["eval", *eval_argv(tiny_llama_dir, dataset_dir, tmp_path / "eval", dataset=dataset)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("glmtune eval: error:") and message in error
    assert "Traceback" not in error
    assert not (tmp_path / "eval").exists()


def test_missing_dataset_is_reported_before_loading(capsys):
    assert cli_main(["eval", "--max_new_tokens", "8"]) == 2
    assert "eval needs dataset" in capsys.readouterr().err


def test_settings_help_lists_eval_flags(capsys):
    assert cli_main(["eval", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--model_name_or_path", "--adapter_name_or_path", "--dataset", "--template", "--max_new_tokens"):
        assert flag in text
    assert "per_device_eval_batch_size" in text


@pytest.mark.slow
def test_default_model_answers_arithmetic_in_its_own_words(tmp_path: Path):
    """The whole path on the embedded default model: greedy answers to math_4op questions, scored."""
    out = tmp_path / "eval"
    argv = ["eval", "--dataset", "math_4op", "--template", "smollm2", "--max_samples", "4", "--max_new_tokens", "24",
            "--output_dir", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    lines = read_jsonl(out / "generated_predictions.jsonl")
    assert len(lines) == 4 and all(line["predict"].strip() for line in lines)
    results = json.loads((out / "predict_results.json").read_text(encoding="utf-8"))
    assert results["num_samples"] == 4 and 0 <= results["rouge-1"] <= 100

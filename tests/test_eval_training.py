"""Evaluation inside `glmtune train`: eval_loss every eval_steps, and predict-with-generate after training."""

import json
from pathlib import Path

import pytest
from train_helpers import (
    read_metrics,
    run_train,
    train_argv,
    train_env,  # noqa: F401  (fixture)
    write_sft_data,
)

from glmtune.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("train_env")
EVAL_EVERY_2_STEPS = ("--val_size", "4", "--eval_strategy", "steps", "--eval_steps", "2", "--per_device_eval_batch_size", "2")


def test_eval_loss_is_logged_every_eval_steps_and_plotted(tiny_llama_dir: Path, tmp_path: Path):
    out = run_train(train_argv(tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "out", *EVAL_EVERY_2_STEPS, "--plot_loss"))
    records = read_metrics(out)
    evaluations = [record for record in records if "eval_loss" in record]
    assert [record["step"] for record in evaluations][:2] == [2, 4]
    assert all(record["eval_loss"] > 0 for record in evaluations)
    assert (out / "training_loss.png").is_file()


def test_do_predict_after_training_writes_both_files(tiny_llama_dir: Path, tmp_path: Path):
    argv = train_argv(
        tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "out", "--val_size", "3",
        "--do_train", "--do_predict", "--predict_with_generate", "--max_new_tokens", "6", "--do_sample", "false",
    )  # fmt: skip
    out = run_train(argv)
    predictions = [json.loads(line) for line in (out / "generated_predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(predictions) == 3
    assert all(set(line) == {"prompt", "label", "predict"} for line in predictions)
    results = json.loads((out / "predict_results.json").read_text(encoding="utf-8"))
    assert results["num_samples"] == 3 and "bleu-4" in results

    # the saved config evaluates as is: the saved adapter answers the same held-out rows the same way
    again = tmp_path / "again"
    assert cli_main(["eval", str(out / "train_config.yaml"), "--adapter_name_or_path", str(out), "--output_dir", str(again)]) == 0
    assert (again / "generated_predictions.jsonl").read_text(encoding="utf-8") == (
        out / "generated_predictions.jsonl"
    ).read_text(encoding="utf-8")


def test_predict_only_run_matches_glmtune_eval(tiny_llama_dir: Path, tmp_path: Path):
    """ChatGLM Efficient Tuning's way, `train --do_train false --do_predict`, gives what `glmtune eval` gives."""
    data = write_sft_data(tmp_path, rows=4)
    common = ["--model_name_or_path", str(tiny_llama_dir), "--dataset", str(data), "--template", "qwen", "--max_new_tokens", "6"]
    assert cli_main(["train", *common, "--do_train", "false", "--do_predict", "--predict_with_generate",
                     "--do_sample", "false", "--output_dir", str(tmp_path / "a")]) == 0  # fmt: skip
    assert cli_main(["eval", *common, "--output_dir", str(tmp_path / "b")]) == 0
    read = lambda name: (tmp_path / name / "generated_predictions.jsonl").read_text(encoding="utf-8")  # noqa: E731
    assert read("a") == read("b")


def test_chatglm_efficient_tuning_evaluation_command_evaluates_without_training(tiny_llama_dir: Path, tmp_path: Path):
    """Its README's command: --do_eval with --predict_with_generate and no --do_train evaluates on the dataset itself."""
    data = write_sft_data(tmp_path, rows=6)
    adapter = run_train(train_argv(tiny_llama_dir, data, tmp_path / "sft"))
    argv = ["train", "--stage", "sft", "--model_name_or_path", str(tiny_llama_dir), "--do_eval", "--dataset", str(data),
            "--template", "qwen", "--checkpoint_dir", str(adapter), "--output_dir", str(tmp_path / "eval"),
            "--per_device_eval_batch_size", "8", "--max_samples", "5", "--predict_with_generate", "--max_new_tokens", "4"]  # fmt: skip
    assert cli_main(argv) == 0
    lines = (tmp_path / "eval" / "generated_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5
    assert not (tmp_path / "eval" / "adapter_model.safetensors").exists()  # nothing was trained


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--eval_strategy", "steps"), "eval_strategy=steps evaluates on held-out data: set val_size"),
        (("--do_predict",), "do_predict writes generated predictions: add predict_with_generate"),
        (("--do_train", "--do_predict", "--predict_with_generate"), "predicting after training needs held-out data"),
    ],
)
def test_impossible_evaluation_settings_fail_before_loading(tmp_path: Path, capsys, extra: tuple, message: str):
    argv = ["train", "--model_name_or_path", str(tmp_path / "absent"), "--dataset", "identity", "--output_dir", str(tmp_path / "o"), *extra]
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err

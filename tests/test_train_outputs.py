"""What a training run leaves behind: weights, tokenizer, resolved config, state, metrics, plot, summary."""

import dataclasses
import json
import re
from pathlib import Path

import pytest
from train_helpers import (
    read_metrics,
    run_train,
    train_argv,
    train_env,  # noqa: F401  (fixture)
    write_sft_data,
)
from transformers import AutoTokenizer

from glmtune.data.pipeline import build_tokenized_data
from glmtune.data.templates import get_template
from glmtune.hparams.entry import get_train_args
from glmtune.stages import STAGES

pytestmark = pytest.mark.usefixtures("train_env")

SUMMARY = re.compile(
    r"^train summary: runtime (?P<runtime>[\d.]+) s, (?P<samples>[\d.]+) samples/s, "
    r"(?P<tokens>[\d.]+) effective tokens/s \(non-padding\), peak memory (?P<memory>\d+) MB",
    re.MULTILINE,
)
STEP_KEYS = ("loss", "learning_rate", "grad_norm", "tokens_per_second", "epoch")


def as_comparable(arguments: tuple) -> list[dict]:
    return [item.to_dict() if hasattr(item, "to_dict") else dataclasses.asdict(item) for item in arguments]


def test_output_dir_holds_everything_a_run_promises(tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = train_argv(
        tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "out", "--plot_loss", "--val_size", "4",
        "--eval_strategy", "steps", "--eval_steps", "2", "--per_device_eval_batch_size", "2",
        "--per_device_train_batch_size", "8",  # transformers' default, not glmtune's: must survive the YAML
    )  # fmt: skip
    out = run_train(argv)

    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert not list(out.glob("*model*.bin"))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (out / name).is_file(), name
    assert AutoTokenizer.from_pretrained(out).chat_template == AutoTokenizer.from_pretrained(tiny_llama_dir).chat_template

    assert as_comparable(get_train_args([str(out / "train_config.yaml")]).all()) == as_comparable(get_train_args(argv).all())

    state = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 4

    records = read_metrics(out)
    steps = [record for record in records if "loss" in record]
    assert [record["step"] for record in steps] == [1, 2, 3, 4]
    for record in steps:
        assert all(key in record for key in STEP_KEYS), record
        assert record["tokens_per_second"] > 0
    assert sorted(record["step"] for record in records if "eval_loss" in record) == [2, 4, 4]  # and the final evaluate()

    assert (out / "training_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    summary = SUMMARY.search(capsys.readouterr().out)
    assert summary, "no train summary line on stdout"
    assert all(float(value) > 0 for value in summary.groupdict().values())


def test_effective_tokens_count_non_padding_tokens_only(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """One epoch sees every sample once: the count equals the tokenized set's length, with no padding."""
    argv = train_argv(tiny_llama_dir, write_sft_data(tmp_path, rows=12), tmp_path / "out", "--max_steps", "-1",
                      "--num_train_epochs", "1", "--per_device_train_batch_size", "3")  # fmt: skip
    out = run_train(argv)
    model_args, data_args, training_args, _, _ = get_train_args(argv).all()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    data = build_tokenized_data(data_args, STAGES["sft"], get_template(data_args.template), tokenizer, training_args.seed)
    expected = sum(len(ids) for ids in data.train["input_ids"])
    state = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["num_input_tokens_seen"] == expected
    results = json.loads((out / "all_results.json").read_text(encoding="utf-8"))
    assert results["effective_tokens"] == expected

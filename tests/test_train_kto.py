"""The kto stage: TRL's KTO on answers tagged desirable or undesirable (LLaMA-Factory's kto_tag rows)."""

import json
from pathlib import Path

import pytest
from train_helpers import (
    read_metrics,
    run_train,
    train_argv,
    train_env,  # noqa: F401  (fixture)
)

from glmtune.errors import ConfigError


def write_tagged(directory: Path, rows: int = 16) -> Path:
    """Alpaca rows with a kto_tag column: the right sum is desirable, a refusal undesirable."""
    data = [
        {"instruction": f"What is {i} + {i}?", "output": f"{i} + {i} = {2 * i}." if i % 2 else "No, I do not know.",
         "kto_tag": bool(i % 2)}
        for i in range(rows)
    ]  # fmt: skip
    (directory / "tagged.json").write_text(json.dumps(data), encoding="utf-8")
    info = {"tagged": {"file_name": "tagged.json", "columns": {"kto_tag": "kto_tag"}}}
    (directory / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return directory


def kto_argv(model_dir: Path, data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return train_argv(model_dir, "tagged", output_dir, "--dataset_dir", str(data_dir), *extra, stage="kto")


def test_kto_trains_an_adapter_on_tagged_answers(tiny_model_dir, tmp_path, train_env):
    out = run_train(kto_argv(tiny_model_dir, write_tagged(tmp_path), tmp_path / "kto", "--max_steps", "8",
                             "--per_device_train_batch_size", "4", "--learning_rate", "5e-3"))  # fmt: skip
    assert (out / "adapter_model.safetensors").is_file()
    records = [record for record in read_metrics(out) if "loss" in record]
    assert len(records) == 8 and all(record["loss"] == record["loss"] for record in records)  # no NaN
    saved = (out / "train_config.yaml").read_text(encoding="utf-8")
    assert "stage: kto" in saved and "kto_chosen_weight: 1.0" in saved


def test_kto_with_full_weights_uses_a_frozen_reference_copy(tiny_llama_dir, tmp_path, train_env):
    out = run_train(kto_argv(tiny_llama_dir, write_tagged(tmp_path), tmp_path / "kto", "--finetuning_type", "full"))
    assert next(out.glob("model*.safetensors"), None) is not None


def test_kto_needs_two_rows_per_batch_and_positive_weights(tmp_path):
    from glmtune.hparams.entry import get_train_args

    argv = ["--stage", "kto", "--dataset", "d", "--output_dir", str(tmp_path), "--per_device_train_batch_size", "1",
            "--kto_rejected_weight", "0"]  # fmt: skip
    with pytest.raises(ConfigError, match="per_device_train_batch_size of at least 2") as error:
        get_train_args(argv)
    assert "kto_rejected_weight=0.0: must be > 0" in str(error.value)


def test_untagged_data_for_kto_is_a_clear_error(tiny_llama_dir, tmp_path, train_env):
    with pytest.raises(ConfigError, match="no training sample is left.*90 skipped: no kto_tag"):
        run_train(train_argv(tiny_llama_dir, "identity", tmp_path / "o", stage="kto"))

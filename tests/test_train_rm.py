"""The rm stage: a reward model trained on pairs, saved so that plain transformers + PEFT can score with it."""

import json
from pathlib import Path

import pytest
import torch
from train_helpers import (
    read_metrics,
    run_train,
    train_argv,
    train_env,  # noqa: F401  (fixture)
)

from glmtune.errors import ConfigError


def write_pairs(directory: Path, rows: int = 24) -> Path:
    """A separable toy preference set: the chosen answer is always the correct sum, the rejected one says 'no'."""
    data = [
        {"instruction": f"What is {i} + {i}?", "chosen": f"{i} + {i} = {2 * i}.", "rejected": "No, I do not know."}
        for i in range(rows)
    ]
    (directory / "pairs.json").write_text(json.dumps(data), encoding="utf-8")
    info = {"pairs": {"file_name": "pairs.json", "ranking": True, "columns": {"chosen": "chosen", "rejected": "rejected"}}}
    (directory / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return directory


def rm_argv(model_dir: Path, data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return train_argv(model_dir, "pairs", output_dir, "--dataset_dir", str(data_dir), *extra, stage="rm")


def scores(model, tokenizer, texts: list[str]) -> torch.Tensor:
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right")
    with torch.no_grad():
        return model(**batch).logits[:, 0]


def test_lora_reward_model_saves_its_head_and_loads_with_plain_peft(tiny_model_dir, tmp_path, train_env):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = tiny_model_dir
    out = run_train(rm_argv(base, write_pairs(tmp_path), tmp_path / "rm"))
    weights = load_file(out / "adapter_model.safetensors")
    assert any("score" in name for name in weights)  # the head travels with the adapter
    assert any("loss" in record for record in read_metrics(out))
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model = PeftModel.from_pretrained(model, out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert scores(model, tokenizer, ["1 + 1 = 2.", "No."]).shape == (2,)


def test_reward_model_ranks_a_separable_set_clearly_above_chance(tiny_llama_dir, tmp_path, train_env):
    data = write_pairs(tmp_path, rows=40)
    out = run_train(
        rm_argv(tiny_llama_dir, data, tmp_path / "rm", "--max_steps", "30", "--learning_rate", "5e-3", "--val_size", "8",
                "--eval_strategy", "steps", "--eval_steps", "30", "--per_device_train_batch_size", "4")
    )  # fmt: skip
    evaluations = [record for record in read_metrics(out) if "eval_accuracy" in record]
    assert evaluations and evaluations[-1]["eval_accuracy"] >= 0.9
    assert evaluations[-1]["eval_margin"] > 0


@pytest.mark.parametrize("method", ["freeze", "full"])
def test_freeze_and_full_reward_models_train_their_new_head(method, tiny_llama_dir, tmp_path, train_env):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    out = run_train(rm_argv(tiny_llama_dir, write_pairs(tmp_path), tmp_path / "rm", "--finetuning_type", method))
    saved = load_file(next(out.glob("model*.safetensors")))
    untrained = AutoModelForSequenceClassification.from_pretrained(tiny_llama_dir, num_labels=1)
    assert not torch.equal(saved["score.weight"], untrained.score.weight)  # the head moved
    AutoModelForSequenceClassification.from_pretrained(out)  # a standalone reward model


def test_chatglm_efficient_tuning_rm_command_starts_from_the_sft_adapter(tiny_llama_dir, tmp_path, train_env):
    """`--stage rm --resume_lora_training False --checkpoint_dir SFT`: the sft adapter is merged, a new one trains."""
    from train_helpers import write_sft_data

    sft = run_train(train_argv(tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "sft"))
    argv = rm_argv(tiny_llama_dir, write_pairs(tmp_path), tmp_path / "rm", "--finetuning_type", "lora",
                   "--resume_lora_training", "False", "--checkpoint_dir", str(sft))  # fmt: skip
    out = run_train(argv)
    config = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["task_type"] == "SEQ_CLS"


def test_resume_continues_a_reward_model(tiny_llama_dir, tmp_path, train_env):
    argv = rm_argv(tiny_llama_dir, write_pairs(tmp_path), tmp_path / "rm")  # 4 steps, a checkpoint every 2
    out = run_train(argv)
    assert (out / "checkpoint-4").is_dir()
    run_train([*argv, "--max_steps", "6", "--resume_from_checkpoint", "auto"])
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6


@pytest.mark.parametrize("dataset", ["identity", "math_4op"])
def test_plain_data_for_rm_is_a_clear_error(dataset, tiny_llama_dir, tmp_path, train_env):
    with pytest.raises(ConfigError, match=f"'{dataset}' has no usable rows for stage rm.*no \\[chosen, rejected\\] pair"):
        run_train(train_argv(tiny_llama_dir, dataset, tmp_path / "o", stage="rm"))


def test_score_command_scores_one_answer_and_ranks_held_out_pairs(tiny_llama_dir, tmp_path, train_env, capsys):
    from glmtune.cli import main

    data = write_pairs(tmp_path, rows=40)
    out = run_train(rm_argv(tiny_llama_dir, data, tmp_path / "rm", "--max_steps", "30", "--learning_rate", "5e-3",
                            "--per_device_train_batch_size", "4", "--val_size", "8"))  # fmt: skip
    capsys.readouterr()
    model = ["--model", str(tiny_llama_dir), "--adapter", str(out), "--template", "qwen"]
    assert main(["score", *model, "--prompt", "What is 3 + 3?", "--response", "3 + 3 = 6."]) == 0
    good = float(capsys.readouterr().out.split("score:")[1])
    assert main(["score", *model, "--prompt", "What is 3 + 3?", "--response", "No, I do not know."]) == 0
    bad = float(capsys.readouterr().out.split("score:")[1])
    assert good > bad
    argv = ["score", *model, "--dataset", "pairs", "--dataset_dir", str(data), "--val_size", "8"]
    assert main(argv) == 0
    summary = capsys.readouterr().out
    assert "8 pairs" in summary and float(summary.split("accuracy ")[1].split(",")[0]) >= 0.9


@pytest.mark.parametrize(
    ("argv", "message"),
    [([], "not both"), (["--prompt", "Q"], "both --prompt and --response"), (["--prompt", "Q", "--response", "A", "--dataset", "d"], "not both")],
)
def test_score_needs_one_answer_or_a_dataset(argv, message):
    from glmtune.hparams.entry import get_score_args

    with pytest.raises(ConfigError, match=message):
        get_score_args(argv)


def test_an_sft_adapter_cannot_continue_as_a_reward_adapter(tiny_llama_dir, tmp_path, train_env):
    from train_helpers import write_sft_data

    sft = run_train(train_argv(tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "sft"))
    with pytest.raises(ConfigError, match="--create_new_adapter true"):
        run_train(rm_argv(tiny_llama_dir, write_pairs(tmp_path), tmp_path / "rm", "--checkpoint_dir", str(sft)))


def test_qlora_reward_model_keeps_its_head_in_the_hidden_states_dtype(tiny_llama_dir, tmp_path, train_env):
    """TRL casts a quantized model's trainable weights to bf16; the fp32 score head must still read fp32 states."""
    out = run_train(rm_argv(tiny_llama_dir, write_pairs(tmp_path), tmp_path / "rm", "--quantization_bit", "4"))
    assert any("loss" in record for record in read_metrics(out))


def test_p_tuning_cannot_train_a_score_head(tmp_path):
    from glmtune.hparams.entry import get_train_args

    with pytest.raises(ConfigError, match="stage=rm trains a scoring head, which finetuning_type=p_tuning cannot"):
        get_train_args(["--stage", "rm", "--finetuning_type", "p_tuning", "--dataset", "d", "--output_dir", str(tmp_path)])

"""The dpo stage: TRL's DPO on glmtune's template-encoded pairs, with an adapter or a full model."""

import json
from pathlib import Path

import pytest
import torch
from test_train_rm import write_pairs
from train_helpers import (
    read_metrics,
    run_train,
    train_argv,
    train_env,  # noqa: F401  (fixture)
)

from glmtune.errors import ConfigError


def dpo_argv(model_dir: Path, data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return train_argv(model_dir, "pairs", output_dir, "--dataset_dir", str(data_dir), *extra, stage="dpo")


def answer_logp(model, tokenizer, prompt: str, answer: str) -> float:
    """Summed log-probability of the answer's tokens after the prompt, in the qwen layout the data uses."""
    from glmtune.data.templates import encode_turns, get_template

    turns = encode_turns(get_template("qwen"), tokenizer, [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
    prompt_ids, answer_ids = turns[0]
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    targets = ids[0, 1:]
    picked = logps.gather(1, targets[:, None])[:, 0]
    return float(picked[len(prompt_ids) - 1 :].sum())


def margin(model_args, prompt: str, chosen: str, rejected: str) -> float:
    from glmtune.data.tokenizer import load_tokenizer
    from glmtune.model.loader import load_model

    model, tokenizer = load_model(model_args), load_tokenizer(model_args)
    return answer_logp(model, tokenizer, prompt, chosen) - answer_logp(model, tokenizer, prompt, rejected)


def test_dpo_raises_the_chosen_answers_margin_with_lora(tiny_model_dir, tmp_path, train_env):
    from glmtune.hparams import ModelArguments

    data = write_pairs(tmp_path, rows=16)
    out = run_train(dpo_argv(tiny_model_dir, data, tmp_path / "dpo", "--max_steps", "12", "--learning_rate", "5e-3",
                             "--per_device_train_batch_size", "4", "--pref_beta", "0.5"))  # fmt: skip
    records = [record for record in read_metrics(out) if "loss" in record]
    assert records[-1]["rewards/margins"] > records[0]["rewards/margins"]
    assert sum(r["loss"] for r in records[-3:]) / 3 < sum(r["loss"] for r in records[:3]) / 3
    prompt, chosen, rejected = "What is 3 + 3?", "3 + 3 = 6.", "No, I do not know."
    before = margin(ModelArguments(model_name_or_path=str(tiny_model_dir)), prompt, chosen, rejected)
    after = margin(ModelArguments(model_name_or_path=str(tiny_model_dir), adapter_name_or_path=str(out)), prompt, chosen, rejected)
    assert after > before  # a held-out pair of the same kind moved the same way


@pytest.mark.parametrize("method", ["full", "freeze"])
def test_dpo_with_full_weights_uses_a_frozen_reference_copy(method, tiny_llama_dir, tmp_path, train_env):
    out = run_train(dpo_argv(tiny_llama_dir, write_pairs(tmp_path), tmp_path / "dpo", "--finetuning_type", method))
    assert next(out.glob("model*.safetensors"), None) is not None
    assert any("rewards/margins" in record for record in read_metrics(out))


def test_sft_term_and_loss_choice_reach_the_trainer(tiny_llama_dir, tmp_path, train_env):
    out = run_train(dpo_argv(tiny_llama_dir, write_pairs(tmp_path), tmp_path / "dpo", "--pref_loss", "ipo",
                             "--pref_ftx", "0.5", "--dpo_beta", "0.2"))  # fmt: skip
    saved = (out / "train_config.yaml").read_text(encoding="utf-8")
    assert "pref_loss: ipo" in saved and "pref_ftx: 0.5" in saved and "pref_beta: 0.2" in saved
    assert any("loss" in record for record in read_metrics(out))


def test_dpo_resumes_from_its_checkpoint(tiny_llama_dir, tmp_path, train_env):
    argv = dpo_argv(tiny_llama_dir, write_pairs(tmp_path), tmp_path / "dpo")
    out = run_train(argv)
    run_train([*argv, "--max_steps", "6", "--resume_from_checkpoint", "auto"])
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [(("--pref_beta", "0"), "pref_beta=0.0: must be > 0"), (("--pref_loss", "kto"), "invalid choice: 'kto'"),
     (("--pref_loss", "orpo", "--pref_ftx", "0.5"), "orpo has its SFT term built in")],
)
def test_bad_preference_settings_fail_before_loading(extra, message, tmp_path):
    from glmtune.hparams.entry import get_train_args

    with pytest.raises(ConfigError, match=message):
        get_train_args(["--stage", "dpo", "--dataset", "preference", "--output_dir", str(tmp_path), *extra])


def test_plain_data_for_dpo_is_a_clear_error(tiny_llama_dir, tmp_path, train_env):
    with pytest.raises(ConfigError, match="'identity' has no usable rows for stage dpo"):
        run_train(train_argv(tiny_llama_dir, "identity", tmp_path / "o", stage="dpo"))


@pytest.mark.parametrize("extra", [("--finetuning_type", "p_tuning"), ("--quantization_bit", "4")], ids=["p_tuning", "qlora"])
def test_dpo_trains_with_prefixes_and_on_quantized_weights(extra, tiny_llama_dir, tmp_path, train_env):
    out = run_train(dpo_argv(tiny_llama_dir, write_pairs(tmp_path), tmp_path / "dpo", *extra))
    assert (out / "adapter_model.safetensors").is_file()
    assert any("rewards/margins" in record for record in read_metrics(out))


@pytest.mark.parametrize("loss", ["orpo", "simpo"])
def test_reference_free_losses_raise_the_margin_without_a_reference(loss, tiny_llama_dir, tmp_path, train_env):
    from glmtune.hparams import ModelArguments

    out = run_train(dpo_argv(tiny_llama_dir, write_pairs(tmp_path, rows=16), tmp_path / loss, "--pref_loss", loss,
                             "--max_steps", "12", "--learning_rate", "5e-3", "--per_device_train_batch_size", "4"))  # fmt: skip
    assert (out / "adapter_model.safetensors").is_file()
    records = [record for record in read_metrics(out) if "loss" in record]
    assert len(records) == 12 and all(record["loss"] == record["loss"] for record in records)  # no NaN
    prompt, chosen, rejected = "What is 3 + 3?", "3 + 3 = 6.", "No, I do not know."
    before = margin(ModelArguments(model_name_or_path=str(tiny_llama_dir)), prompt, chosen, rejected)
    after = margin(ModelArguments(model_name_or_path=str(tiny_llama_dir), adapter_name_or_path=str(out)), prompt, chosen, rejected)
    assert after > before

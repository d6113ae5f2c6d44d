"""The dpo stage: TRL's DPO on glmtune's template-encoded pairs, with an adapter or a full model."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from test_train_rm import write_pairs
from train_helpers import (
    read_metrics,
    run_train,
    step_losses,
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


def test_packed_and_padded_pairs_train_alike_and_evaluate(tiny_llama_dir, tmp_path, train_env):
    """The CPU default packs each batch's pairs; micro_batch_tokens=0 keeps TRL's padded rows: same losses, step by step."""
    data = write_pairs(tmp_path, rows=20)
    common = ("--max_steps", "4", "--learning_rate", "5e-3", "--logging_steps", "1", "--val_size", "4",
              "--train_sampling_strategy", "sequential", "--per_device_train_batch_size", "4", "--pref_ftx", "0.5")  # fmt: skip
    packed = run_train(dpo_argv(tiny_llama_dir, data, tmp_path / "packed", *common))
    padded = run_train(dpo_argv(tiny_llama_dir, data, tmp_path / "padded", *common, "--micro_batch_tokens", "0"))
    losses, expected = step_losses(packed), step_losses(padded)
    assert losses.keys() == expected.keys() and len(losses) == 4
    assert [losses[step] for step in losses] == pytest.approx([expected[step] for step in expected], abs=1e-4)
    evaluated = json.loads((packed / "all_results.json").read_text())
    assert evaluated["eval_rewards/margins"] == pytest.approx(json.loads((padded / "all_results.json").read_text())["eval_rewards/margins"], abs=1e-4)


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


def packed_pairs_trainer_on_tiny_model(model_dir: Path, tokenizer_dir: Path, tmp_path: Path, losses: list[str], method: str, budget: int = 0):
    """glmtune's packed-pairs DPO trainer on a tiny model whose policy differs from its reference: a random LoRA
    adapter (the reference is the model without it), or full weights with a perturbed reference copy."""
    import copy

    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from glmtune.model.segment_attention import use_segment_attention
    from glmtune.train.preference import pretokenized
    from glmtune.train.preference_logps import packed_pairs_trainer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa", dtype=torch.float32)
    reference = None
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    else:
        reference = copy.deepcopy(model)
        with torch.no_grad():
            for weight in reference.parameters():
                weight.add_(0.01 * torch.randn_like(weight))
        use_segment_attention(reference)
    use_segment_attention(model)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = DPOConfig(output_dir=str(tmp_path / "out"), report_to="none", loss_type=losses, loss_weights=[1.0, 0.5][: len(losses)],
                       beta=0.3, max_length=None, remove_unused_columns=False, bf16=False)  # fmt: skip
    generator = torch.Generator().manual_seed(1)

    def ids(count: int) -> list[int]:
        return torch.randint(3, len(tokenizer), (count,), generator=generator).tolist()

    rows = [
        {"prompt_ids": ids(7), "chosen_ids": ids(5), "rejected_ids": ids(9)},
        {"prompt_ids": ids(12), "chosen_ids": ids(3), "rejected_ids": ids(1)},
        {"prompt_ids": ids(4), "chosen_ids": ids(11), "rejected_ids": ids(6)},
    ]
    trainer = packed_pairs_trainer(pretokenized(DPOTrainer))(
        model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
        ref_model=reference, micro_batch_tokens=budget,
    )  # fmt: skip
    with torch.no_grad():  # TRL keeps a copy of the starting adapter as the reference: move the policy off it
        for name, weight in model.named_parameters():
            if "lora_" in name and ".default." in name:
                weight.add_(0.05 * torch.randn_like(weight))
    model.train()
    return model, trainer, trainer.data_collator(rows)


def assert_same_gradients(gradients: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Equal to 1e-5 of each tensor's largest entry (the random tiny model's gradients reach tens; fp32 sums in
    another order differ in the last digits)."""
    assert gradients.keys() == expected.keys() and expected
    for name, value in expected.items():
        assert float((gradients[name] - value).abs().max()) <= 1e-5 * float(value.abs().max()) + 1e-7, name


@contextmanager
def trls_own_computation(trainer) -> Iterator[None]:
    """DPOTrainer's padded computation on the same trainer (reference log-probabilities computed by TRL too)."""
    trainer.packs_pairs, trainer.precompute_ref_logps = False, False
    try:
        yield
    finally:
        trainer.packs_pairs, trainer.precompute_ref_logps = True, True


def loss_and_gradients(trainer, model, batch, step: bool = False) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    if step:
        loss = trainer.training_step(model, batch)
    else:
        loss = trainer.compute_loss(model, batch)
        loss.backward()
    gradients = {name: weight.grad.clone() for name, weight in model.named_parameters() if weight.grad is not None}
    return float(loss), gradients


@pytest.mark.parametrize(
    ("losses", "method"),
    [(["sigmoid"], "lora"), (["ipo"], "lora"), (["hinge"], "lora"), (["sigmoid", "sft"], "lora"), (["sigmoid"], "full")],
)
def test_packed_pairs_give_trls_loss_gradients_and_metrics(losses, method, tiny_llama_dir, tiny_tokenizer_dir, tmp_path):
    model, trainer, batch = packed_pairs_trainer_on_tiny_model(tiny_llama_dir, tiny_tokenizer_dir, tmp_path, losses, method)
    assert trainer.packs_pairs
    with trls_own_computation(trainer):
        expected_loss, expected_gradients = loss_and_gradients(trainer, model, batch)
    expected_metrics = {key: list(values) for key, values in trainer._metrics["train"].items()}
    trainer._metrics["train"].clear()
    loss, gradients = loss_and_gradients(trainer, model, batch)
    assert loss == pytest.approx(expected_loss, abs=1e-5)
    assert_same_gradients(gradients, expected_gradients)
    metrics = trainer._metrics["train"]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                "logps/rejected", "entropy", "logits/chosen", "logits/rejected", "mean_token_accuracy"):  # fmt: skip
        assert metrics[key] == pytest.approx(expected_metrics[key], abs=1e-4), key
    assert expected_metrics["rewards/margins"][0] != 0  # the reference differs from the policy


def test_pairs_over_the_token_budget_run_as_micro_batches_with_the_same_gradients(tiny_llama_dir, tiny_tokenizer_dir, tmp_path):
    model, trainer, batch = packed_pairs_trainer_on_tiny_model(tiny_llama_dir, tiny_tokenizer_dir, tmp_path, ["sigmoid", "sft"], "lora", budget=30)
    assert len(trainer.pair_groups(batch)) > 1
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    with trls_own_computation(trainer):
        expected_loss, expected_gradients = loss_and_gradients(trainer, model, batch, step=True)
    loss, gradients = loss_and_gradients(trainer, model, batch, step=True)
    assert loss == pytest.approx(expected_loss, abs=1e-5)
    assert_same_gradients(gradients, expected_gradients)


def test_rows_are_packed_with_each_prompt_once():
    from glmtune.train.answer_layout import packed_layout

    input_ids = torch.tensor([[5, 6, 7, 8], [5, 6, 9, 0], [5, 4, 9, 9], [5, 6, 3, 3]])
    attention_mask = (torch.arange(4) < torch.tensor([[4], [3], [4], [4]])).long()
    completion = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    layout = packed_layout(input_ids, attention_mask, input_ids.masked_fill(completion == 0, -100))
    # rows 1 and 3 share row 0's prompt [5, 6] (packed 0 to 2): they keep only their answers, which attend to it
    # as their prefix and continue its positions; row 2's prompt [5, 4] differs, so it stands alone
    assert layout.input_ids.tolist() == [[5, 6, 7, 8, 9, 5, 4, 9, 9, 3, 3]]
    assert layout.position_ids.tolist() == [[0, 1, 2, 3, 2, 0, 1, 2, 3, 2, 3]]
    assert layout.boundaries.tolist() == [0, 4, 5, 9, 11] and layout.prefixes == [None, (0, 2), None, (0, 2)]
    assert layout.sources.tolist() == [1, 2, 1, 6, 7, 1, 9]  # every answer to [5, 6] starts after packed token 1
    assert layout.rows.tolist() == [0, 0, 1, 2, 2, 3, 3] and layout.columns.tolist() == [1, 2, 1, 1, 2, 1, 2]
    assert layout.targets.tolist() == [7, 8, 9, 9, 9, 3, 3]


def test_left_padded_rows_pack_from_their_first_real_token():
    """GRPO's rows: prompts padded on the left, answers on the right."""
    from glmtune.train.answer_layout import packed_layout

    input_ids = torch.tensor([[0, 5, 6, 7, 8], [0, 5, 6, 9, 0], [4, 4, 6, 3, 3]])
    attention_mask = torch.tensor([[0, 1, 1, 1, 1], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, :3] = -100
    layout = packed_layout(input_ids, attention_mask, labels)
    assert layout.input_ids.tolist() == [[5, 6, 7, 8, 9, 4, 4, 6, 3, 3]]
    assert layout.position_ids.tolist() == [[0, 1, 2, 3, 2, 0, 1, 2, 3, 4]]
    assert layout.prefixes == [None, (0, 2), None] and layout.sources.tolist() == [1, 2, 1, 7, 8]
    assert layout.rows.tolist() == [0, 0, 1, 2, 2] and layout.columns.tolist() == [2, 3, 2, 2, 3]
    assert packed_layout(input_ids, torch.tensor([[1, 0, 1, 1, 1]] * 3), labels) is None  # a hole: not one span

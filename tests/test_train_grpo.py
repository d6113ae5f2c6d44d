"""The grpo stage: TRL's GRPO generating from glmtune-encoded prompts, scored by bundled or user reward functions."""

import json
from pathlib import Path
from typing import Any

import pytest
from train_helpers import (
    read_metrics,
    run_train,
    train_argv,
    train_env,  # noqa: F401  (fixture)
)

from glmtune.errors import ConfigError
from glmtune.hparams.rollout_args import BUNDLED_REWARDS
from glmtune.train.rewards import BUNDLED, math_close, math_exact
from glmtune.train.rewards import format as format_reward

GRPO_FLAGS = ("--generator_args", "{size: 16, seed: 1}", "--per_device_train_batch_size", "4",
              "--max_completion_length", "8", "--max_steps", "2")  # fmt: skip


def grpo_argv(model_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return train_argv(model_dir, "math_4op", output_dir, *GRPO_FLAGS, *extra, stage="grpo")


def test_the_settings_name_every_bundled_reward():
    assert BUNDLED_REWARDS == tuple(BUNDLED)


def test_bundled_rewards_check_the_result_and_the_form():
    completions = ["12 * 7 = 84", "the answer is 84", "12 * 7 = 85", ""]
    assert math_exact(completions, answer=["12 * 7 = 84"] * 4) == [1.0, 1.0, 0.0, 0.0]
    assert format_reward(completions) == [1.0, 0.0, 1.0, 0.0]
    assert math_close([*completions, "12 * 7 = 168", "12 * 7 = -3"], answer=["12 * 7 = 84"] * 6) == pytest.approx(
        [1.0, 1.0, 1 - 1 / 84, 0.0, 0.0, 0.0]
    )  # near misses keep most of the credit; a relative error of 1 or more, or no number, none


def test_grpo_trains_an_adapter_and_logs_each_reward(tiny_model_dir, tmp_path, train_env):
    out = run_train(grpo_argv(tiny_model_dir, tmp_path / "grpo", "--reward_funcs", "math_exact,format"))
    assert (out / "adapter_model.safetensors").is_file()
    records = [record for record in read_metrics(out) if "loss" in record]
    assert len(records) == 2 and all("rewards/math_exact/mean" in r and "rewards/format/mean" in r for r in records)


@pytest.mark.parametrize("method", ["p_tuning", "full"])
def test_grpo_trains_with_prefixes_and_full_weights_against_a_reference(method, tiny_llama_dir, tmp_path, train_env):
    """Prefix tuning scores answers on padded rows (its prefix needs the attention mask); full weights with a KL
    term score a separate reference model too."""
    out = run_train(grpo_argv(tiny_llama_dir, tmp_path / "grpo", "--reward_funcs", "format", "--finetuning_type", method,
                              "--grpo_beta", "0.04"))  # fmt: skip
    records = [record for record in read_metrics(out) if "loss" in record]
    assert len(records) == 2 and all(record["kl"] >= 0 for record in records)


@pytest.fixture
def brevity_reward(tmp_path, monkeypatch) -> str:
    """A user's reward function in its own module, importable as the returned module:function; it scores every
    answer by its length, so each group has a spread."""
    (tmp_path / "my_rewards.py").write_text(
        "def brevity(completions, **kwargs):\n    return [1.0 / (1 + len(text)) for text in completions]\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_rewards:brevity"


def test_a_users_reward_function_by_module_and_name(tiny_llama_dir, tmp_path, train_env, brevity_reward):
    out = run_train(grpo_argv(tiny_llama_dir, tmp_path / "grpo", "--reward_funcs", brevity_reward))
    rewards = [record["rewards/brevity/mean"] for record in read_metrics(out) if "rewards/brevity/mean" in record]
    assert rewards and all(0 < reward <= 1 for reward in rewards)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "stage grpo needs reward_funcs"),
        (("--reward_funcs", "math_exat"), "unknown 'math_exat'"),
        (("--reward_funcs", "math_exact", "--num_generations", "3"), "must be a multiple of num_generations=3"),
        (("--reward_funcs", "math_exact", "--num_generations", "1"), "at least 2 answers"),
        (("--reward_funcs", "math_exact", "--grpo_epochs", "0"), "grpo_epochs=0: must be at least 1"),
    ],
)
def test_bad_grpo_settings_fail_before_loading(extra, message, tmp_path):
    from glmtune.hparams.entry import get_train_args

    with pytest.raises(ConfigError, match=message):
        get_train_args(["--stage", "grpo", "--dataset", "math_4op", "--output_dir", str(tmp_path), *extra])


def test_an_unimportable_reward_function_is_a_clear_error(tiny_llama_dir, tmp_path, train_env):
    with pytest.raises(ConfigError, match="cannot import 'no_such_module:reward'"):
        run_train(grpo_argv(tiny_llama_dir, tmp_path / "grpo", "--reward_funcs", "no_such_module:reward"))


def test_sampling_and_kl_settings_reach_the_trainer(tiny_llama_dir, tmp_path, train_env):
    """GRPO samples the policy itself by default; --temperature/--top_p and --grpo_beta are passed on, not ignored."""
    import torch

    from glmtune.hparams.entry import get_train_args

    default = get_train_args(grpo_argv(tiny_llama_dir, tmp_path / "d", "--reward_funcs", "format")).generating
    assert (default.temperature, default.top_p, default.top_k) == (1.0, 1.0, 0)
    out = run_train(grpo_argv(tiny_llama_dir, tmp_path / "grpo", "--reward_funcs", "format", "--grpo_beta", "0.04",
                              "--temperature", "0.7", "--top_p", "0.9", "--max_steps", "1"))  # fmt: skip
    config = torch.load(out / "training_args.bin", weights_only=False)
    assert (config.beta, config.temperature, config.top_p, config.top_k) == (0.04, 0.7, 0.9, 0)
    # tokens are counted by GRPOTrainer, not by the Trainer (which finds no input_ids and warns every step)
    assert config.include_num_input_tokens_seen == "no"
    assert json.loads((out / "trainer_state.json").read_text())["num_input_tokens_seen"] > 0


def test_grpo_epochs_update_more_than_once_from_one_generation(tiny_llama_dir, tmp_path, train_env, brevity_reward):
    """--grpo_epochs 2 reaches TRL as num_iterations: two steps share one batch of answers, so rewards are logged
    (generation ran) at the first step only, and the second step still trains."""
    import torch

    out = run_train(grpo_argv(tiny_llama_dir, tmp_path / "grpo", "--reward_funcs", brevity_reward, "--grpo_epochs", "2"))
    assert torch.load(out / "training_args.bin", weights_only=False).num_iterations == 2
    records = [record for record in read_metrics(out) if "loss" in record]
    assert len(records) == 2
    assert "rewards/brevity/mean" in records[0] and records[1].get("rewards/brevity/mean") is None
    assert records[1]["grad_norm"] > 0


@pytest.mark.parametrize("packed", [True, False])
def test_answer_scoring_gives_trls_log_probabilities_entropies_and_gradients(packed, tiny_llama_dir, tiny_tokenizer_dir, tmp_path, monkeypatch):
    """glmtune's GRPO scores answers with the head at answer tokens only, and with each prompt run once when the
    model attends by segment: the same values and LoRA gradients as TRL's own pass over every padded position,
    for a group's left-padded prompts and right-padded answers at a temperature."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from glmtune.model.segment_attention import use_segment_attention
    from glmtune.train.answer_head import AnswerHeadModel
    from glmtune.train.grpo import glmtune_grpo

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    if packed:
        use_segment_attention(model)
    config = GRPOConfig(output_dir=str(tmp_path / "out"), report_to="none", temperature=0.7, num_generations=2,
                        per_device_train_batch_size=2, bf16=False, gradient_checkpointing=False)  # fmt: skip
    trainer = glmtune_grpo(GRPOTrainer)(
        model=model, reward_funcs=format_reward, args=config, train_dataset=Dataset.from_list([{"prompt": [5, 6, 7]}] * 2),
        processing_class=AutoTokenizer.from_pretrained(tiny_tokenizer_dir),
    )  # fmt: skip
    ids = torch.randint(3, 200, (4, 14), generator=torch.Generator().manual_seed(1))
    ids[1, :8] = ids[0, :8]  # rows 0-1 and 2-3 are two groups: each shares its prompt (8 tokens), answers differ
    ids[3, :8] = ids[2, :8]
    mask = torch.ones_like(ids)
    mask[2:, :3] = 0  # the second group's shorter prompt, left-padded
    mask[1, -4:] = 0  # a shorter answer, right-padded
    answer_weights = torch.randn(4, 6)

    def scores(compute: Any) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        log_probs, entropies, _ = compute(trainer, trainer.model, ids, mask, 6, compute_entropy=True)
        (log_probs * answer_weights).sum().backward()
        gradients = {name: weight.grad.clone() for name, weight in model.named_parameters() if weight.grad is not None}
        return log_probs.detach(), entropies, gradients

    expected_log_probs, expected_entropies, expected_gradients = scores(GRPOTrainer._get_per_token_logps_and_entropies)
    packed_passes = []
    original = AnswerHeadModel.packed
    monkeypatch.setattr(AnswerHeadModel, "packed", lambda self, *a: packed_passes.append(original(self, *a)) or packed_passes[-1])
    log_probs, entropies, gradients = scores(type(trainer)._get_per_token_logps_and_entropies)
    assert [output is not None for output in packed_passes] == ([True] if packed else [])
    assert torch.allclose(log_probs, expected_log_probs, atol=1e-5) and torch.allclose(entropies, expected_entropies, atol=1e-4)
    assert gradients.keys() == expected_gradients.keys() and gradients
    for name, value in expected_gradients.items():
        assert torch.allclose(gradients[name], value, atol=1e-5 * float(value.abs().max()) + 1e-7), name

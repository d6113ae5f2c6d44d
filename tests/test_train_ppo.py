"""The ppo stage: glmtune's own PPO trainer, rewarded by reward functions or a trained reward model."""

import json
import sys
from dataclasses import replace
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

PPO_FLAGS = ("--generator_args", "{size: 16, seed: 1}", "--max_completion_length", "6", "--ppo_epochs", "2")


def ppo_argv(model_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return train_argv(model_dir, "math_4op", output_dir, *PPO_FLAGS, *extra, stage="ppo")


def test_ppo_with_reward_functions_trains_and_logs(tiny_model_dir, tmp_path, train_env):
    out = run_train(ppo_argv(tiny_model_dir, tmp_path / "ppo", "--reward_funcs", "format"))
    assert (out / "adapter_model.safetensors").is_file() and (out / "value_head.safetensors").is_file()
    records = [record for record in read_metrics(out) if "loss" in record]
    assert len(records) == 4
    assert all({"reward", "kl", "kl_coef", "policy_loss", "value_loss"} <= set(record) for record in records)


def even_first_token(completion_ids: list[list[int]], **kwargs: object) -> list[float]:
    """+1 for an answer whose first token id is even, -1 otherwise: half the vocabulary is rewarded."""
    return [1.0 if ids[0] % 2 == 0 else -1.0 for ids in completion_ids]


def even_first_token_mass(model_args, prompt_ids: list[list[int]]) -> float:
    """The policy's probability of starting its answer with an even token id, averaged over prompts."""
    from glmtune.model.loader import load_model

    model = load_model(model_args)
    masses = []
    with torch.no_grad():
        for prompt in prompt_ids:
            probabilities = model(input_ids=torch.tensor([prompt])).logits[0, -1].softmax(-1)
            masses.append(float(probabilities[0::2].sum()))
    return sum(masses) / len(masses)


@pytest.fixture
def even_reward(monkeypatch: pytest.MonkeyPatch) -> str:
    """even_first_token as a user's reward function, by module:function."""
    monkeypatch.setitem(sys.modules, "ppo_test_rewards", sys.modules[__name__])
    return "ppo_test_rewards:even_first_token"


def test_ppo_moves_the_policy_toward_the_rewarded_tokens(tiny_llama_dir, tmp_path, train_env, even_reward):
    from glmtune.data.pipeline import build_tokenized_data
    from glmtune.data.templates import get_template
    from glmtune.data.tokenizer import load_tokenizer
    from glmtune.hparams.entry import get_train_args
    from glmtune.stages import get_stage

    argv = ppo_argv(tiny_llama_dir, tmp_path / "ppo", "--reward_funcs", even_reward,
                    "--max_completion_length", "1", "--ppo_epochs", "4", "--per_device_train_batch_size", "8",
                    "--learning_rate", "3e-3", "--max_steps", "6", "--ppo_kl_coef", "0")  # fmt: skip
    args = get_train_args(argv)
    prompts = build_tokenized_data(args.data, get_stage("ppo"), get_template("qwen"), load_tokenizer(args.model), 1)
    prompt_ids = [row["prompt_ids"] for row in prompts.train][:8]
    before = even_first_token_mass(args.model, prompt_ids)
    out = run_train(argv)
    after = even_first_token_mass(replace(args.model, adapter_name_or_path=str(out)), prompt_ids)
    assert after > before + 0.1, (before, after)  # from about 0.65 to 0.8-0.85 here
    rewards = [record["reward"] for record in read_metrics(out) if "reward" in record]
    assert sum(rewards[-2:]) > sum(rewards[:2])


def test_chatglm_efficient_tuning_sft_rm_ppo_pipeline(tiny_llama_dir, tmp_path, train_env):
    """ChatGLM Efficient Tuning's commands: rm from the sft adapter, then `--stage ppo --checkpoint_dir SFT
    --reward_model RM`; the reward model is rebuilt as it trained (base + sft merged + its adapter and head)."""
    from test_train_rm import rm_argv, write_pairs
    from train_helpers import write_sft_data

    from glmtune.hparams.model_args import ModelArguments
    from glmtune.train.reward_sources import reward_model_args

    sft = run_train(train_argv(tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "sft"))
    rm = run_train(rm_argv(tiny_llama_dir, write_pairs(tmp_path), tmp_path / "rm", "--finetuning_type", "lora",
                           "--resume_lora_training", "False", "--checkpoint_dir", str(sft)))  # fmt: skip
    rebuilt = reward_model_args(ModelArguments(model_name_or_path="elsewhere"), str(rm))
    assert rebuilt.model_name_or_path == str(tiny_llama_dir) and rebuilt.adapter_name_or_path == f"{sft},{rm}"
    out = run_train(ppo_argv(tiny_llama_dir, tmp_path / "ppo", "--finetuning_type", "lora", "--checkpoint_dir", str(sft),
                             "--reward_model", str(rm), "--plot_loss"))  # fmt: skip
    records = [record for record in read_metrics(out) if "reward" in record]
    assert len(records) == 4 and len({record["reward"] for record in records}) > 1  # the reward model's scores vary
    assert abs(records[0]["kl"]) < 1e-6  # the reference is the sft adapter the policy starts from, not the bare base
    assert not (out / "reference").exists()
    assert (out / "training_loss.png").is_file()


@pytest.mark.parametrize("method", ["freeze", "full"])
def test_ppo_without_an_adapter_keeps_a_frozen_reference(method, tiny_llama_dir, tmp_path, train_env):
    out = run_train(ppo_argv(tiny_llama_dir, tmp_path / "ppo", "--reward_funcs", "format", "--finetuning_type", method,
                             "--max_steps", "2"))  # fmt: skip
    assert (out / "model.safetensors").is_file() and (out / "value_head.safetensors").is_file()
    from safetensors.torch import load_file

    assert not any(name.startswith("v_head") for name in load_file(out / "model.safetensors"))
    assert [record["kl"] for record in read_metrics(out) if "kl" in record][0] == 0.0  # starts at the reference


def test_under_bf16_the_frozen_reference_still_starts_at_the_policy(tiny_llama_dir, tmp_path, train_env, monkeypatch):
    """The reference copy is held as training holds the policy and runs in its autocast: step 1's KL stays 0."""
    monkeypatch.setenv("GLMTUNE_PRECISION", "bf16")
    out = run_train(ppo_argv(tiny_llama_dir, tmp_path / "ppo", "--reward_funcs", "format", "--finetuning_type", "freeze",
                             "--max_steps", "1"))  # fmt: skip
    assert [record["kl"] for record in read_metrics(out) if "kl" in record][0] == 0.0


def test_ppo_resumes_with_its_value_head_and_kl_weight(tiny_llama_dir, tmp_path, train_env, even_reward):
    argv = ppo_argv(tiny_llama_dir, tmp_path / "ppo", "--reward_funcs", even_reward)  # 4 steps, a checkpoint every 2
    out = run_train(argv)
    saved_head = (out / "checkpoint-4" / "value_head.safetensors").read_bytes()
    run_train([*argv, "--max_steps", "6", "--resume_from_checkpoint", "auto"])
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    assert (out / "value_head.safetensors").read_bytes() != saved_head  # continued from the checkpoint's head
    assert json.loads((out / "checkpoint-6" / "ppo_state.json").read_text())["kl_coef"] > 0


def test_held_out_prompts_report_the_mean_reward(tiny_llama_dir, tmp_path, train_env):
    out = run_train(ppo_argv(tiny_llama_dir, tmp_path / "ppo", "--reward_funcs", "format", "--val_size", "4",
                             "--max_steps", "2"))  # fmt: skip
    results = json.loads((out / "all_results.json").read_text())
    assert 0.0 <= results["eval_reward"] <= 1.0 and results["eval_answer_length"] >= 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "stage ppo needs one reward source"),
        (("--reward_funcs", "format", "--reward_model", "."), "stage ppo needs one reward source"),
        (("--reward_model", "no/such/dir"), "reward_model no/such/dir: no such directory"),
        (("--reward_funcs", "formt"), "unknown 'formt'"),
        (("--reward_funcs", "format", "--ppo_lam", "2"), "ppo_lam=2.0: must be between 0 and 1"),
    ],
)
def test_bad_ppo_settings_fail_before_loading(extra, message, tmp_path):
    from glmtune.hparams.entry import get_train_args

    with pytest.raises(ConfigError, match=message):
        get_train_args(["--stage", "ppo", "--dataset", "math_4op", "--output_dir", str(tmp_path), *extra])


def test_pairwise_data_for_ppo_is_a_clear_error(tiny_llama_dir, tmp_path, train_env):
    from test_train_rm import write_pairs

    argv = ppo_argv(tiny_llama_dir, tmp_path / "ppo", "--reward_funcs", "format")
    argv[argv.index("math_4op")] = "pairs"
    with pytest.raises(ConfigError, match="pairs"):
        run_train([*argv, "--dataset_dir", str(write_pairs(tmp_path))])


def test_a_reward_adapter_on_the_policys_base_scores_as_the_reward_model_does(tiny_llama_dir, tmp_path, train_env):
    """`--resume_lora_training False --checkpoint_dir SFT` for both rm and ppo: the reward adapter shares the policy's
    base (one base model in memory) and scores exactly as the reward model loaded on its own."""
    from test_train_rm import rm_argv, write_pairs
    from train_helpers import write_sft_data

    from glmtune.hparams.entry import get_train_args
    from glmtune.stages import get_stage
    from glmtune.train.ppo_experience import attach_value_head
    from glmtune.train.reward_sources import load_scorer, reward_model_scorer
    from glmtune.train.session import tokenizer_data_model

    sft = run_train(train_argv(tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "sft"))
    on_sft = ("--finetuning_type", "lora", "--resume_lora_training", "False", "--checkpoint_dir", str(sft))
    rm = run_train(rm_argv(tiny_llama_dir, write_pairs(tmp_path), tmp_path / "rm", *on_sft, "--learning_rate", "1e-2"))
    args = get_train_args(ppo_argv(tiny_llama_dir, tmp_path / "ppo", *on_sft, "--reward_model", str(rm)))
    tokenizer, _, policy = tokenizer_data_model(get_stage("ppo"), args)
    attach_value_head(policy)
    trainable = {name for name, parameter in policy.named_parameters() if parameter.requires_grad}
    shared, is_shared = load_scorer(args, policy, tokenizer)
    separate = reward_model_scorer(args.model, str(rm), tokenizer)
    prompts = [tokenizer.encode("What is 2 + 2?"), tokenizer.encode("Say hello")]
    answers = [tokenizer.encode("2 + 2 = 4."), tokenizer.encode("No, I do not know.")]
    assert is_shared
    assert shared(prompts, answers, ["", ""]) == pytest.approx(separate(prompts, answers, ["", ""]), abs=1e-4)
    assert {name for name, parameter in policy.named_parameters() if parameter.requires_grad} == trainable
    out = run_train(ppo_argv(tiny_llama_dir, tmp_path / "ppo", *on_sft, "--reward_model", str(rm)))
    assert not (out / "reward").exists() and (out / "adapter_model.safetensors").is_file()


def test_rollouts_sample_the_policy_itself_unless_told_otherwise(tmp_path):
    from glmtune.hparams.entry import get_train_args

    base = ["--stage", "ppo", "--dataset", "math_4op", "--reward_funcs", "format", "--output_dir", str(tmp_path)]
    generating = get_train_args(base).generating
    assert (generating.do_sample, generating.temperature, generating.top_p, generating.top_k, generating.repetition_penalty) == (
        True, 1.0, 1.0, 0, 1.0
    )
    generating = get_train_args([*base, "--top_k", "0", "--top_p", "0.9"]).generating  # ChatGLM Efficient Tuning's flags
    assert (generating.top_p, generating.top_k) == (0.9, 0)

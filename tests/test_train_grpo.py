"""The grpo stage: TRL's GRPO generating from glmtune-encoded prompts, scored by bundled or user reward functions."""

from pathlib import Path

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


def test_a_users_reward_function_by_module_and_name(tiny_llama_dir, tmp_path, train_env, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def brevity(completions, **kwargs):\n    return [1.0 / (1 + len(text)) for text in completions]\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = run_train(grpo_argv(tiny_llama_dir, tmp_path / "grpo", "--reward_funcs", "my_rewards:brevity"))
    rewards = [record["rewards/brevity/mean"] for record in read_metrics(out) if "rewards/brevity/mean" in record]
    assert rewards and all(0 < reward <= 1 for reward in rewards)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "stage grpo needs reward_funcs"),
        (("--reward_funcs", "math_exat"), "unknown 'math_exat'"),
        (("--reward_funcs", "math_exact", "--num_generations", "3"), "must be a multiple of num_generations=3"),
        (("--reward_funcs", "math_exact", "--num_generations", "1"), "at least 2 answers"),
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

"""Several adapters: continue one, merge all but the last and continue it, or merge all and start fresh.

A fresh LoRA adds nothing at step 1 (its B matrices start at zero), so the first logged loss
tells which weights a run started from: the base's, or the base with given adapters merged.
"""

import json
from pathlib import Path

import pytest
import torch
from tiny_models import make_lora_adapter
from train_helpers import (
    adapter_weights,
    run_train,
    step_losses,
    train_argv,
    train_env,  # noqa: F401  (fixture)
    write_sft_data,
)

from glmtune.hparams import ModelArguments
from glmtune.hparams.export_args import ExportArguments
from glmtune.model.export import export_model

pytestmark = pytest.mark.usefixtures("train_env")

CONTINUE_FLAGS = ("--max_steps", "2", "--learning_rate", "1e-4")  # small steps: continued weights stay near their start


def train_adapter(model_dir: Path, data: Path, output_dir: Path) -> Path:
    """Adapter a1: rank 4, trained with a large learning rate so its weights are far from a fresh LoRA."""
    return run_train(train_argv(model_dir, data, output_dir, "--lora_rank", "4", "--learning_rate", "1e-2"))


def max_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    assert first.keys() == second.keys()
    return max((first[key] - second[key]).abs().max().item() for key in first)


def largest_lora_b(weights: dict[str, torch.Tensor]) -> float:
    return max(value.abs().max().item() for key, value in weights.items() if "lora_B" in key)


def adapter_rank(directory: Path) -> int:
    return json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))["r"]


@pytest.mark.parametrize("flag", ["--adapter_name_or_path", "--checkpoint_dir"])
def test_a_given_adapter_is_continued(flag: str, tiny_llama_dir: Path, tmp_path: Path) -> None:
    data = write_sft_data(tmp_path)
    a1 = train_adapter(tiny_llama_dir, data, tmp_path / "a1")
    out = run_train(train_argv(tiny_llama_dir, data, tmp_path / "continued", flag, str(a1), *CONTINUE_FLAGS))
    assert adapter_rank(out) == 4  # a1's configuration, not this run's default rank
    start, continued = adapter_weights(a1), adapter_weights(out)
    assert 0 < max_difference(start, continued) < largest_lora_b(start) / 10
    assert step_losses(out)[1] != pytest.approx(step_losses(a1)[1], abs=1e-3)  # a1 already changes the first loss


def test_create_new_adapter_merges_the_given_one_and_starts_fresh(tiny_llama_dir: Path, tmp_path: Path) -> None:
    data = write_sft_data(tmp_path)
    a1 = train_adapter(tiny_llama_dir, data, tmp_path / "a1")
    continued = run_train(
        train_argv(tiny_llama_dir, data, tmp_path / "continued", "--adapter_name_or_path", str(a1), *CONTINUE_FLAGS)
    )
    fresh = run_train(train_argv(tiny_llama_dir, data, tmp_path / "fresh", "--adapter_name_or_path", str(a1),
                                 "--create_new_adapter", "--lora_rank", "2", *CONTINUE_FLAGS))  # fmt: skip
    assert adapter_rank(fresh) == 2
    assert largest_lora_b(adapter_weights(fresh)) < largest_lora_b(adapter_weights(a1)) / 10
    # Step 1 of both runs sees base + a1 (merged, or as the adapter itself), never the bare base.
    assert step_losses(fresh)[1] == pytest.approx(step_losses(continued)[1], abs=1e-4)
    assert step_losses(fresh)[1] != pytest.approx(step_losses(a1)[1], abs=1e-3)


def test_all_adapters_but_the_last_are_merged_and_the_last_continues(tiny_llama_dir: Path, tmp_path: Path) -> None:
    data = write_sft_data(tmp_path)
    a1 = train_adapter(tiny_llama_dir, data, tmp_path / "a1")
    a2 = tmp_path / "a2"
    make_lora_adapter(tiny_llama_dir, a2, seed=5)  # rank 4 on q_proj and v_proj, large B matrices
    merged_base = export_model(
        ModelArguments(model_name_or_path=str(tiny_llama_dir), adapter_name_or_path=str(a1)),
        ExportArguments(export_dir=str(tmp_path / "base+a1")),
    )

    def continue_a2(model_dir: Path, adapters: str, name: str) -> Path:
        return run_train(train_argv(model_dir, data, tmp_path / name, "--adapter_name_or_path", adapters, *CONTINUE_FLAGS))

    stacked = continue_a2(tiny_llama_dir, f"{a1},{a2}", "stacked")
    on_merged = continue_a2(merged_base, str(a2), "on_merged")
    a2_only = continue_a2(tiny_llama_dir, str(a2), "a2_only")

    for step, loss in step_losses(on_merged).items():
        assert step_losses(stacked)[step] == pytest.approx(loss, abs=1e-4), f"step {step}"
    assert step_losses(stacked)[1] != pytest.approx(step_losses(a2_only)[1], abs=1e-3)
    saved, start = adapter_weights(stacked), adapter_weights(a2)
    assert max_difference(saved, adapter_weights(on_merged)) < 1e-5
    assert 0 < max_difference(saved, start) < largest_lora_b(start) / 10

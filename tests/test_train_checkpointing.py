"""Activation (gradient) checkpointing trades compute for memory: it must not change what training computes."""

from pathlib import Path
from typing import Any

import pytest
import transformers.modeling_utils
from train_helpers import (
    run_train,
    step_losses,
    train_argv,
    train_env,  # noqa: F401  (fixture)
    write_sft_data,
)

pytestmark = pytest.mark.usefixtures("train_env")

METHOD_FLAGS = {
    "lora": ["--lora_target", "all"],
    "freeze": ["--num_layer_trainable", "1"],
    "full": [],
}


@pytest.fixture
def recomputed_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every layer call that transformers routes through torch's checkpoint (recomputed in the backward pass)."""
    calls: list[Any] = []
    original = transformers.modeling_utils.checkpoint

    def counting_checkpoint(function: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(function)
        return original(function, *args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", counting_checkpoint)
    return calls


@pytest.mark.parametrize("method", list(METHOD_FLAGS))
def test_checkpointing_recomputes_layers_and_gives_the_same_losses(
    method: str, tiny_llama_dir: Path, tmp_path: Path, recomputed_calls: list[Any]
) -> None:
    data = write_sft_data(tmp_path)
    losses = {}
    for flag in ("false", "true"):
        argv = train_argv(tiny_llama_dir, data, tmp_path / flag, "--finetuning_type", method,
                          "--learning_rate", "1e-2", "--gradient_checkpointing", flag,
                          "--train_sampling_strategy", "sequential", *METHOD_FLAGS[method])  # fmt: skip
        losses[flag] = step_losses(run_train(argv))
        assert bool(recomputed_calls) == (flag == "true")
    assert len(losses["true"]) == 4
    assert losses["true"] == pytest.approx(losses["false"], abs=1e-5)
    assert len(set(losses["true"].values())) > 1  # the weights moved between steps


def test_every_second_layer_can_be_checkpointed(tiny_llama_dir: Path, tmp_path: Path, recomputed_calls: list[Any]) -> None:
    argv = train_argv(tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "out", "--activation_checkpointing", "true",
                      "--activation_checkpointing_kwargs", '{"every_n_layers": 2}', "--max_steps", "1",
                      "--micro_batch_tokens", "0")  # fmt: skip
    run_train(argv)
    layers = transformers.AutoConfig.from_pretrained(tiny_llama_dir).num_hidden_layers
    assert layers >= 2
    assert len(recomputed_calls) == (layers + 1) // 2  # one step, one batch, one forward pass: layers 0, 2, 4, ...

"""Every fine-tuning method trains through `glmtune train` on tiny Llama and GLM models, then reloads;
each method gets its own default learning rate unless the user gives one.

Adapters (lora, p_tuning) reload onto the base through `--adapter_name_or_path`; freeze and
full runs save a whole model that loads as a model directory. A reload must change the
base model's logits, so a run that saved untrained or unused weights fails.
"""

import json
import math
from pathlib import Path

import pytest
import torch
from train_helpers import (
    base_logits,
    run_train,
    step_losses,
    train_argv,
    train_env,  # noqa: F401  (fixture)
    write_pt_data,
    write_sft_data,
)
from transformers import AutoTokenizer

from glmtune.chat.chat_model import ChatModel
from glmtune.hparams import DataArguments, GeneratingArguments, ModelArguments
from glmtune.hparams.entry import TRAINING_DEFAULTS, get_infer_args, get_train_args
from glmtune.methods import METHODS

pytestmark = pytest.mark.usefixtures("train_env")

METHOD_FLAGS = {
    "lora": ["--lora_rank", "4"],
    "p_tuning": ["--pre_seq_len", "4"],
    "freeze": ["--num_layer_trainable", "1"],
    "full": [],
}
ADAPTER_METHODS = ("lora", "p_tuning")
PROMPT = "What is the capital of France?"


def input_ids(model_dir: Path) -> torch.Tensor:
    return AutoTokenizer.from_pretrained(model_dir)(PROMPT, return_tensors="pt").input_ids


def reload_args(model_dir: Path, output_dir: Path, method: str) -> ModelArguments:
    """Model arguments as `glmtune chat` would parse them for this run's output."""
    if method in ADAPTER_METHODS:
        argv = ["--model_name_or_path", str(model_dir), "--adapter_name_or_path", str(output_dir)]
    else:
        argv = ["--model_name_or_path", str(output_dir)]
    return get_infer_args(argv)[0]


def assert_trained(output_dir: Path, steps: int) -> None:
    losses = step_losses(output_dir)
    assert sorted(losses) == list(range(1, steps + 1))
    assert all(math.isfinite(loss) for loss in losses.values()), losses


def assert_changes_logits(model_dir: Path, output_dir: Path, method: str) -> None:
    ids = input_ids(model_dir)
    base = base_logits(ModelArguments(model_name_or_path=str(model_dir)), ids)
    tuned = base_logits(reload_args(model_dir, output_dir, method), ids)
    assert tuned.shape == base.shape
    assert torch.isfinite(tuned).all()
    assert (tuned - base).abs().max() > 1e-3


@pytest.mark.parametrize("method", list(METHOD_FLAGS))
def test_sft_trains_and_reloads(method: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    argv = train_argv(tiny_model_dir, write_sft_data(tmp_path), tmp_path / "out", "--finetuning_type", method,
                      "--learning_rate", "1e-2", *METHOD_FLAGS[method])  # fmt: skip
    out = run_train(argv)
    assert_trained(out, steps=4)
    weights = "adapter_model.safetensors" if method in ADAPTER_METHODS else "model.safetensors"
    assert (out / weights).is_file()
    assert_changes_logits(tiny_model_dir, out, method)
    if method in ADAPTER_METHODS:  # the inference engine generates with the adapter attached
        generating = GeneratingArguments(temperature=0, max_new_tokens=4)
        chat = ChatModel.from_args(reload_args(tiny_model_dir, out, method), DataArguments(template="qwen"), generating)
        assert chat.chat([{"role": "user", "content": PROMPT}]).completion_tokens >= 1


def test_pt_with_lora_trains_and_reloads(tiny_llama_dir: Path, tmp_path: Path) -> None:
    dataset = write_pt_data(tmp_path)
    argv = train_argv(tiny_llama_dir, dataset, tmp_path / "out", "--dataset_dir", str(tmp_path), "--learning_rate", "1e-2",
                      stage="pt")  # fmt: skip
    out = run_train(argv)
    assert_trained(out, steps=4)
    assert_changes_logits(tiny_llama_dir, out, "lora")


@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_trains_and_reloads(bits: int, tiny_llama_dir: Path, tmp_path: Path) -> None:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as error:  # not installed (pip install 'glmtune[quant]'), or no backend for this machine
        pytest.skip(f"bitsandbytes does not import here: {error}")
    data = write_sft_data(tmp_path)
    quantized = ("--quantization_bit", str(bits), "--learning_rate", "1e-2")
    out = run_train(train_argv(tiny_llama_dir, data, tmp_path / "out", *quantized))
    assert_trained(out, steps=4)
    # A fresh LoRA adds nothing at step 1, so that loss is the base's: quantized weights give another one.
    full_precision = run_train(train_argv(tiny_llama_dir, data, tmp_path / "fp32", "--max_steps", "1"))
    assert step_losses(out)[1] != pytest.approx(step_losses(full_precision)[1], abs=1e-4)
    assert_changes_logits(tiny_llama_dir, out, "lora")  # the adapter also serves a full-precision base


def test_dora_and_rslora_reach_the_saved_peft_config(tiny_llama_dir: Path, tmp_path: Path) -> None:
    argv = train_argv(tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "out", "--use_dora", "--use_rslora",
                      "--lora_rank", "4", "--lora_alpha", "8", "--learning_rate", "1e-2")  # fmt: skip
    out = run_train(argv)
    assert_trained(out, steps=4)
    config = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["use_dora"] is True and config["use_rslora"] is True
    assert config["r"] == 4 and config["lora_alpha"] == 8
    assert_changes_logits(tiny_llama_dir, out, "lora")


def method_argv(tmp_path: Path, method: str, where: str, learning_rate: str | None = None, lr_where: str = "flag") -> list[str]:
    """A train command line naming the method (and maybe a learning rate) in YAML, key=value or --flag form."""
    yaml_settings: dict[str, str] = {"dataset": "d", "output_dir": str(tmp_path / "o")}
    pairs: list[str] = []
    flags: list[str] = []
    for name, value, source in (("finetuning_type", method, where), ("learning_rate", learning_rate, lr_where)):
        if value is None:
            continue
        if source == "yaml":
            yaml_settings[name] = value
        elif source == "key_value":
            pairs.append(f"{name}={value}")
        else:
            flags += [f"--{name}", value]
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(yaml_settings), encoding="utf-8")  # JSON is YAML
    return [str(config), *pairs, *flags]


@pytest.mark.parametrize("where", ["flag", "key_value", "yaml"])
@pytest.mark.parametrize("method", list(METHOD_FLAGS))
def test_learning_rate_defaults_to_the_methods_own(method: str, where: str, tmp_path: Path) -> None:
    training_args = get_train_args(method_argv(tmp_path, method, where)).training
    assert training_args.learning_rate == METHODS[method].learning_rate


def test_without_a_method_the_lora_defaults_apply(tmp_path: Path) -> None:
    training_args = get_train_args(["--dataset", "d", "--output_dir", str(tmp_path / "o")]).training
    assert training_args.learning_rate == METHODS["lora"].learning_rate
    assert training_args.per_device_train_batch_size == TRAINING_DEFAULTS["per_device_train_batch_size"]


@pytest.mark.parametrize("lr_where", ["flag", "key_value", "yaml"])
@pytest.mark.parametrize("method", ["full", "p_tuning"])
def test_a_given_learning_rate_wins_over_the_methods(method: str, lr_where: str, tmp_path: Path) -> None:
    argv = method_argv(tmp_path, method, "flag", learning_rate="3e-3", lr_where=lr_where)
    assert get_train_args(argv).training.learning_rate == pytest.approx(3e-3)


def test_memory_is_pinned_only_where_a_gpu_can_use_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["--dataset", "d", "--output_dir", str(tmp_path / "o")]
    assert get_train_args(argv).training.dataloader_pin_memory is torch.cuda.is_available()
    # A CPU-only machine defaults to use_cpu (for --bf16), where transformers turns pinning off.
    pinned = get_train_args([*argv, "--dataloader_pin_memory", "true", "--use_cpu", "false"])
    assert pinned.training.dataloader_pin_memory is True

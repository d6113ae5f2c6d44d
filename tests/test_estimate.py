"""`glmtune estimate`: the arithmetic of its terms, real model shapes from config.json alone, and the command."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from glmtune.cli import main
from glmtune.hparams.entry import get_estimate_args
from glmtune.model.shape_buckets import ONEDNN_KERNEL_CACHE
from glmtune.train.estimate_command import estimate_request, meta_model, model_config
from glmtune.train.estimate_inputs import (
    model_counts,
    tokens_per_forward,
    zero_settings,
)
from glmtune.train.memory_estimate import (
    ATTENTION_BACKWARD_BYTES_PER_LENGTH,
    GIB,
    ONEDNN_KERNEL_BYTES,
    ModelCounts,
    RunSettings,
    activation_bytes_per_token_layer,
    attention_lengths,
    estimate_memory,
    quantized_bytes_per_param,
)

CHATGLM3 = Path(__file__).resolve().parents[1] / ".." / "shared" / "models" / "chatglm3-6b"
COUNTS = ModelCounts(
    num_layers=4, hidden_size=64, intermediate_size=128, query_width=64, kv_width=32, num_heads=4, vocab_size=1000,
    total_params=1_000_000, trainable_params=10_000, quantized_params=0, path_layers=4, path_linear_params=50_000,
    held_linear_params=40_000, path_held_linear_params=30_000, trains_norms=False, plain_head=True, checkpoint_bytes=4_000_000,
)  # fmt: skip
RUN = RunSettings(
    device="gpu", weight_bytes=2, compute_bytes=2, quantization_bit=None, double_quantization=True,
    tokens_per_forward=512, gradient_checkpointing=False, eager_attention=False, segment_attention=False,
    optimizer_state_bytes=8,
)  # fmt: skip


def item(estimate, name: str) -> int:
    return next(entry.bytes for entry in estimate.items if entry.name == name)


def test_chatglm3_parameter_count_from_its_config_alone():
    """ChatGLM3-6B has 6.24B parameters; the shared folder holds its config.json and no weights."""
    args = get_estimate_args(["--model_name_or_path", str(CHATGLM3), "--finetuning_type", "full"]).train
    config, _ = model_config(args.model)
    counts = model_counts(meta_model(config, args, "AutoModelForCausalLM"), 0)
    assert counts.total_params == pytest.approx(6.24e9, rel=0.01)
    assert counts.trainable_params == counts.total_params
    assert (counts.num_layers, counts.hidden_size, counts.kv_width) == (28, 4096, 256)


def test_lora_on_chatglm3_fits_a_24gb_gpu_and_not_an_8gb_one(tmp_path, capsys):
    common = ["estimate", "--model_name_or_path", str(CHATGLM3), "--finetuning_type", "lora", "--device", "cuda",
              "--gradient_checkpointing", "true"]  # fmt: skip
    assert main([*common, "--device_memory", "24GB", "--output_dir", str(tmp_path)]) == 0
    assert "fits:" in capsys.readouterr().out
    record = json.loads((tmp_path / "memory_estimate.json").read_text())
    weights = next(entry["bytes"] for entry in record["items"] if entry["name"] == "weights")
    assert weights == pytest.approx(6.24e9 * 2, rel=0.01)  # bf16 on a GPU
    assert record["fits"] is True and record["device"] == "gpu" and record["precision"] == "bf16"
    assert main([*common, "--device_memory", "8GB"]) == 0
    assert "does not fit:" in capsys.readouterr().out


def test_quantized_weights_take_bitsandbytes_sizes():
    assert quantized_bytes_per_param(4, double_quantization=False) == 0.5 + 4 / 64
    assert quantized_bytes_per_param(4, double_quantization=True) == 0.5 + 1 / 64 + 4 / (64 * 256)
    counts = replace(COUNTS, quantized_params=800_000)
    estimate = estimate_memory(counts, replace(RUN, quantization_bit=4))
    frozen_fp32 = (1_000_000 - 10_000 - 800_000) * 4  # kbit training holds the unquantized weights in fp32
    assert item(estimate, "weights") == int(frozen_fp32 + 800_000 * quantized_bytes_per_param(4, True))


def test_zero_stages_divide_state_by_the_devices(tmp_path):
    plain = estimate_memory(COUNTS, RUN)
    stage = {s: estimate_memory(COUNTS, replace(RUN, zero_stage=s, num_devices=4)) for s in (1, 2, 3)}
    assert item(stage[1], "optimizer state") == item(plain, "optimizer state") // 4
    assert item(stage[1], "gradients") == item(plain, "gradients")
    assert item(stage[2], "gradients") == item(plain, "gradients") // 4
    assert item(stage[2], "weights") == item(plain, "weights")
    assert item(stage[3], "weights") == item(plain, "weights") // 4
    config = tmp_path / "ds.json"
    config.write_text(json.dumps({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}))
    assert zero_settings(str(config)) == (3, True, False)
    offloaded = estimate_memory(COUNTS, replace(RUN, zero_stage=3, offload_optimizer=True))
    assert item(offloaded, "optimizer state") == 0


def test_checkpointing_keeps_layer_inputs_and_one_layer():
    per_token = activation_bytes_per_token_layer(COUNTS, RUN)
    plain = estimate_memory(COUNTS, RUN)
    checkpointed = estimate_memory(COUNTS, replace(RUN, gradient_checkpointing=True))
    assert item(plain, "activations") == 4 * 512 * per_token
    assert item(checkpointed, "activations") == 4 * 512 * 64 * 2 + 512 * per_token
    assert "with gradient checkpointing" in plain.notes[0]


def test_autocast_over_fp32_weights_keeps_low_precision_copies():
    fp32_weights = replace(RUN, weight_bytes=4)
    assert item(estimate_memory(COUNTS, fp32_weights), "autocast weight copies") == 50_000 * 2
    assert item(estimate_memory(COUNTS, RUN), "autocast weight copies") == 0
    assert activation_bytes_per_token_layer(COUNTS, fp32_weights) > activation_bytes_per_token_layer(COUNTS, RUN)


def test_held_frozen_linears_count_at_half_size_and_are_not_copied():
    fp32_weights = replace(RUN, weight_bytes=4)
    plain, held = estimate_memory(COUNTS, fp32_weights), estimate_memory(COUNTS, replace(fp32_weights, holds_frozen_linears=True))
    assert item(plain, "weights") - item(held, "weights") == 40_000 * 2
    assert item(held, "autocast weight copies") == (50_000 - 30_000) * 2  # the adapters alone


@pytest.mark.parametrize(("finetuning_type", "holds"), [("lora", True), ("full", False)])
def test_estimate_follows_the_rule_that_holds_frozen_linears(monkeypatch, finetuning_type, holds):
    monkeypatch.setenv("GLMTUNE_PRECISION", "bf16")
    monkeypatch.setattr("glmtune.precision.cpu_flags", lambda: frozenset({"avx512_bf16"}))
    argv = ["--finetuning_type", finetuning_type, "--device", "cpu"]
    estimate, about = estimate_request(get_estimate_args(argv))
    fp32, _ = estimate_request(get_estimate_args([*argv, "--precision", "fp32"]))
    assert about["precision"] == "bf16"
    saved = item(fp32, "weights") - item(estimate, "weights")
    assert (saved > 100e6) is holds  # the default model's 106M frozen linear weights at 2 bytes instead of 4


def test_cpu_bf16_counts_the_kernel_caches_of_its_few_padded_lengths():
    def caches(**change):
        return [entry.bytes for entry in estimate_memory(COUNTS, replace(RUN, **change)).items if entry.name == "kernel caches"]

    short, long = caches(device="cpu", tokens_per_forward=256), caches(device="cpu", tokens_per_forward=4096)
    assert short and long and long[0] > short[0]
    assert long[0] - short[0] == (attention_lengths(4096) - attention_lengths(256)) * ATTENTION_BACKWARD_BYTES_PER_LENGTH
    assert attention_lengths(256) == 48 and attention_lengths(4096) == 80  # every length below 16, then 8 per doubling
    # per-row attention runs in fp32 on a CPU and eager attention is no SDPA: only oneDNN's kernels stay
    only_onednn = [int(ONEDNN_KERNEL_CACHE * ONEDNN_KERNEL_BYTES)]
    assert caches(device="cpu", segment_attention=True) == caches(device="cpu", eager_attention=True) == only_onednn
    assert caches() == [] and caches(device="cpu", compute_bytes=4) == []  # GPUs and fp32 keep no such caches


def test_peak_is_the_larger_of_backward_and_the_optimizer_step():
    full = replace(COUNTS, trainable_params=COUNTS.total_params)
    estimate = estimate_memory(full, replace(RUN, tokens_per_forward=1))
    assert item(estimate, "optimizer step") > estimate.phase_bytes("backward")
    assert estimate.total == estimate.phase_bytes("always") + item(estimate, "optimizer step")


@pytest.mark.parametrize(
    ("budget", "packs", "expected"),
    [(0, True, 4 * 300), (512, False, 300), (512, True, 512), (256, True, 300), (2048, True, 4 * 300)],
)
def test_tokens_per_forward_follow_the_micro_batches(budget, packs, expected):
    assert tokens_per_forward(budget, packs, batch_size=4, longest_row=300) == expected


def test_micro_batches_and_packing_shrink_activations():
    argv = ["--finetuning_type", "lora", "--cutoff_len", "1024", "--per_device_train_batch_size", "8", "--device", "cpu"]
    budgeted, about = estimate_request(get_estimate_args(argv))
    padded, about_padded = estimate_request(get_estimate_args([*argv, "--micro_batch_tokens", "0"]))
    assert (about["tokens_per_forward"], about_padded["tokens_per_forward"]) == (1024, 8 * 1024)
    assert item(padded, "activations") == 8 * item(budgeted, "activations")


def test_settings_are_checked_before_anything_loads():
    from glmtune.errors import ConfigError

    with pytest.raises(ConfigError, match="device_memory=lots"):
        get_estimate_args(["--device_memory", "lots"])
    assert get_estimate_args(["--device_memory", "16000MB"]).estimate.device_memory_bytes() == 16000 << 20
    assert get_estimate_args(["--device_memory", "24"]).estimate.device_memory_bytes() == 24 * GIB

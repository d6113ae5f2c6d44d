"""Precision: detection from CPU flags, the auto / --bf16 / --fp16 rule, and bf16-vs-fp32 training parity.

bf16 autocast runs on any x86 CPU (slowly without AMX-BF16 or AVX512-BF16), so the parity test
fakes a fast CPU's flags and runs everywhere.
"""

import logging
from pathlib import Path

import pytest
import torch
from train_helpers import (
    adapter_weights,
    run_train,
    step_losses,
    train_argv,
    train_env,  # noqa: F401  (fixture)
    write_sft_data,
)

import glmtune.precision as precision
from glmtune.hparams.entry import get_train_args
from glmtune.model.loader import pick_dtype
from glmtune.precision import cpu_flags, cpu_runs_bf16_fast, resolve_precision

FAST = frozenset({"avx2", "avx512f", "avx512_bf16"})
AMX = frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"})
SLOW = frozenset({"avx2", "fma", "avx512f"})
# bf16 keeps 8 significant bits: over 4 LoRA steps of a tiny model the losses differed by at most 0.4%.
LOSS_TOLERANCE = 0.01


@pytest.fixture
def fake_cpu(monkeypatch: pytest.MonkeyPatch):
    """Make this machine look like a CPU with the given flags, with no GPU and no pinned precision."""
    monkeypatch.delenv("GLMTUNE_PRECISION", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def use(flags: frozenset[str]) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: flags)

    return use


@pytest.mark.parametrize(("flags", "fast"), [(FAST, True), (AMX, True), (SLOW, False), (frozenset(), False)])
def test_fast_bf16_needs_amx_or_avx512_bf16(flags, fast):
    assert cpu_runs_bf16_fast(flags) is fast


def test_cpu_flags_agree_with_proc_cpuinfo(monkeypatch):
    """torch's cpuinfo names and the kernel's name the bf16 instructions alike."""
    if "flags" not in (Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""):
        pytest.skip("no x86 /proc/cpuinfo flags here")
    from_torch = cpu_flags()
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    from_proc = cpu_flags()
    assert "sse2" in from_proc
    assert cpu_runs_bf16_fast(from_torch) == cpu_runs_bf16_fast(from_proc)


@pytest.mark.parametrize(
    ("asked", "flags", "expected", "warns"),
    [
        ("auto", FAST, "bf16", False),
        ("auto", AMX, "bf16", False),
        ("auto", SLOW, "fp32", False),
        ("bf16", FAST, "bf16", False),
        ("bf16", SLOW, "fp32", True),
        ("fp16", FAST, "bf16", True),
        ("fp16", SLOW, "fp32", True),
        ("fp32", FAST, "fp32", False),
    ],
)
def test_cpu_precision_rule(monkeypatch, asked, flags, expected, warns):
    monkeypatch.delenv("GLMTUNE_PRECISION", raising=False)
    resolved, warning = resolve_precision(asked, "cpu", flags)
    assert resolved == expected
    assert (warning is not None) is warns


def test_environment_replaces_auto(monkeypatch):
    monkeypatch.setenv("GLMTUNE_PRECISION", "fp32")
    assert resolve_precision("auto", "cpu", FAST) == ("fp32", None)
    assert resolve_precision("bf16", "cpu", FAST) == ("bf16", None)


@pytest.mark.parametrize(("flags", "expected"), [(FAST, "bf16"), (SLOW, "fp32")])
@pytest.mark.parametrize("flag", ["--fp16", "--bf16"])
def test_half_precision_flags_on_a_cpu_warn_once_never_fail(fake_cpu, caplog, flags, expected, flag):
    fake_cpu(flags)
    with caplog.at_level(logging.WARNING, logger="glmtune"):
        args = get_train_args(["--dataset", "x", flag])
    assert (args.training.bf16, args.training.fp16) == (expected == "bf16", False)
    assert args.training.mixed_precision == ("bf16" if expected == "bf16" else "no")
    warned = [record for record in caplog.records if record.name == "glmtune.precision"]
    assert len(warned) == (0 if flag == "--bf16" and expected == "bf16" else 1)


@pytest.mark.parametrize(("flags", "expected"), [(FAST, "bf16"), (SLOW, "fp32")])
def test_auto_training_precision_follows_the_cpu(fake_cpu, flags, expected):
    fake_cpu(flags)
    args = get_train_args(["--dataset", "x"])
    assert args.training.bf16 is (expected == "bf16")
    assert get_train_args(["--dataset", "x", "--precision", "fp32"]).training.bf16 is False


def test_inference_weights_follow_precision_training_weights_stay_fp32(fake_cpu):
    fake_cpu(FAST)
    assert pick_dtype("auto", "cpu") == torch.bfloat16
    assert pick_dtype("auto", "cpu", "fp32") == torch.float32
    assert pick_dtype("auto", "cpu", for_training=True) == torch.float32
    assert pick_dtype("float32", "cpu") == torch.float32
    fake_cpu(SLOW)
    assert pick_dtype("auto", "cpu") == torch.float32


@pytest.mark.usefixtures("train_env")
def test_bf16_training_matches_fp32_on_the_same_batches(fake_cpu, tiny_llama_dir, tmp_path):
    """The same seed and sampler give the same batches; losses agree within LOSS_TOLERANCE (relative) per step."""
    fake_cpu(FAST)
    data = write_sft_data(tmp_path)
    losses = {}
    for name in ("fp32", "bf16"):
        output = run_train(train_argv(tiny_llama_dir, data, tmp_path / name, f"--precision={name}", "--save_steps=100"))
        assert ("bf16: true" in (output / "train_config.yaml").read_text()) is (name == "bf16")
        assert {tensor.dtype for tensor in adapter_weights(output).values()} == {torch.float32}
        losses[name] = step_losses(output)
    assert losses["fp32"].keys() == losses["bf16"].keys() and len(losses["fp32"]) == 4
    assert losses["bf16"] != losses["fp32"]  # autocast really ran
    for step, loss in losses["fp32"].items():
        assert losses["bf16"][step] == pytest.approx(loss, rel=LOSS_TOLERANCE)

"""Which precision a run computes in: bf16 where the hardware runs it fast, fp32 elsewhere.

Detected on the machine that runs, never assumed: the settings layer and the model loader both
read this module, so training, eval, chat and the API follow one rule.
"""

import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# Replaces `auto` for every command (a CI job, a test suite) without editing configs.
PRECISION_ENV = "GLMTUNE_PRECISION"
# Either instruction set runs bf16 matmuls natively; without them torch emulates bf16 slower than fp32.
FAST_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags: torch's cpuinfo view where the installed torch has one, else /proc/cpuinfo."""
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        return frozenset(name for name, value in capabilities().items() if value is True)
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return frozenset()
    return next((frozenset(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), frozenset())


def cpu_runs_bf16_fast(flags: frozenset[str]) -> bool:
    """True on a CPU with AMX-BF16 or AVX512-BF16, where bf16 autocast trains faster than fp32.

    Measured (benchmarks/RESULTS.md, "Precision"): a LoRA step of the default model, 2 x 256 tokens,
    ran 1.55x faster under bf16 autocast on a 2-core Xeon with AMX, and about 2x faster on a 2-core
    AMD EPYC with AVX512-BF16 and no AMX, with the same loss to two decimals; so AVX512-BF16 alone
    counts as fast. Without either, bf16 is emulated and slower than fp32.
    """
    return bool(FAST_BF16_CPU_FLAGS & flags)


def default_device() -> str:
    """The device a run uses when none is named: a CUDA GPU, else Apple's MPS, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(requested: str, device: str, flags: frozenset[str] | None = None) -> tuple[str, str | None]:
    """The precision to compute in (bf16, fp16 or fp32) and a warning when that is not what was asked.

    A CPU runs bf16 autocast where cpu_runs_bf16_fast, and fp16 maps to it there (the CPU's fast
    half precision, fp32's range, no loss scaling); elsewhere the CPU falls back to fp32 with one
    warning, never an error. GPUs and MPS compute as asked; auto picks bf16 on a GPU that has it.
    $GLMTUNE_PRECISION, when set, replaces auto.
    """
    if requested == "auto":
        requested = os.environ.get(PRECISION_ENV) or "auto"
    if device.startswith("cuda"):
        import torch

        return ("bf16" if torch.cuda.is_bf16_supported() else "fp32") if requested == "auto" else requested, None
    if device != "cpu":
        return ("fp32" if requested == "auto" else requested), None
    fast = cpu_runs_bf16_fast(cpu_flags() if flags is None else flags)
    if requested == "auto":
        return ("bf16" if fast else "fp32"), None
    if requested in ("fp32", "bf16") and (fast or requested == "fp32"):
        return requested, None
    if fast:
        return "bf16", "fp16 on a CPU runs as bf16 autocast, the fast half precision this CPU has"
    return "fp32", (
        f"{requested} asked, but this CPU has neither AMX-BF16 nor AVX512-BF16, where half precision runs "
        "slower than fp32: computing in fp32"
    )


def apply_training_precision(model_args: Any, training_args: Any) -> str:
    """Resolve --bf16 / --fp16 / model_args.precision into the training settings, warning once; returns the result.

    Trainable weights and optimizer state stay fp32 either way (bf16 is autocast). A DeepSpeed run
    keeps its flags as given: its config file decides precision.
    """
    if training_args.deepspeed:
        return "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32"
    asked = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else model_args.precision
    device = "cpu" if training_args.use_cpu else (default_device() if model_args.device == "auto" else model_args.device)
    precision, warning = resolve_precision(asked, device)
    if warning:
        logger.warning(warning)
    training_args.bf16, training_args.fp16 = precision == "bf16", precision == "fp16"
    training_args.mixed_precision = "no" if precision == "fp32" else precision
    model_args.precision = precision
    return precision

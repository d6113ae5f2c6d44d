"""Precision (issue 16, item 1): fp32 vs bf16 autocast on this machine, with its CPU flags beside the figures.

Three measurements: a 2048x2048 matmul in fp32 and bf16 (GFLOP/s); one LoRA step of the default
model on 2 x 256 random tokens, plain fp32 vs under torch.autocast("cpu", bfloat16) (PEFT, lora on
all linear layers, AdamW; median seconds); and train_throughput.py's glmtune run with
`--precision fp32` and `--precision bf16`, rows read in file order so both see the same batches:
effective tokens/s after the warm-up steps and the loss at every step. Runs alternate over
--repeats and medians are reported. Not part of the test suite.
Run: flock /tmp/glmtune-cpu.lock .venv/bin/python benchmarks/precision.py [--repeats 2]
"""

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from train_throughput import (
    SETTINGS,
    default_model_path,
    figures,
    parameter_count,
    run_glmtune,
    run_length,
)

from glmtune.precision import FAST_BF16_CPU_FLAGS, cpu_flags, cpu_runs_bf16_fast

LORA_FLOPS_PER_PARAMETER = 4


def machine_line() -> str:
    """CPU model, cores and the flags that decide precision, as printed beside every figure."""
    import torch

    flags = cpu_flags()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor())
    shown = sorted(flag for flag in flags if flag in FAST_BF16_CPU_FLAGS | {"avx512_f", "avx512f", "amx_tile", "avx2"})
    return (
        f"{model}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); "
        f"flags: {' '.join(shown) or 'none of interest'}; no AMX: {not {'amx_bf16', 'amx_tile'} & flags}; "
        f"glmtune auto picks {'bf16' if cpu_runs_bf16_fast(flags) else 'fp32'}"
    )


def matmul_gflops(dtype_name: str, size: int = 2048, repeats: int = 5, rounds: int = 5) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best / 1e9


def lora_step_seconds(model_dir: Path, steps: int = 5, rounds: int = 2) -> dict[str, tuple[float, float]]:
    """Median seconds of a LoRA step (2 x 256 tokens), fp32 and bf16 autocast alternating on one model, and
    each precision's loss on the untrained model (the steps train it, so their losses are not comparable)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    input_ids = torch.randint(0, model.config.vocab_size, (2, 256), generator=torch.Generator().manual_seed(0))

    def loss(bf16: bool) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(input_ids=input_ids, labels=input_ids).loss

    def step(bf16: bool) -> None:
        loss(bf16).backward()
        optimizer.step()
        optimizer.zero_grad()

    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    with torch.no_grad():
        untrained = {name: loss(name == "bf16").item() for name in times}
    for _ in range(rounds):
        for name in times:
            step(name == "bf16")
            for _ in range(steps):
                start = time.perf_counter()
                step(name == "bf16")
                times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(values), untrained[name]) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    options = parser.parse_args()
    print(machine_line())
    print(f"load before: {os.getloadavg()}")
    fp32, bf16 = matmul_gflops("float32"), matmul_gflops("bfloat16")
    print(f"matmul 2048x2048: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s ({bf16 / fp32:.2f}x)")
    model_dir = default_model_path()
    step = lora_step_seconds(model_dir)
    print(
        f"LoRA step, 2 x 256 tokens: fp32 {step['fp32'][0]:.2f} s, bf16 autocast {step['bf16'][0]:.2f} s: "
        f"{step['fp32'][0] / step['bf16'][0]:.2f}x; untrained loss fp32 {step['fp32'][1]:.4f}, bf16 {step['bf16'][1]:.4f}"
    )
    flops_per_token = LORA_FLOPS_PER_PARAMETER * parameter_count(model_dir)
    length = run_length(options.max_steps, None, "sequential")
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    losses: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="glmtune-precision-") as directory:
        for repeat in range(options.repeats):
            for name in rates:
                work = Path(directory) / f"{name}{repeat}"
                work.mkdir()
                run = run_glmtune(work, length, {"precision": name})
                result = figures(run, options.warmup_steps, SETTINGS["per_device_train_batch_size"], flops_per_token, fp32 * 1e9)
                rates[name].append(result.tokens_per_s)
                losses[name] = run.losses
                print(
                    f"run {repeat + 1} {name}: {result.tokens_per_s:.1f} effective tokens/s "
                    f"({100 * result.fraction_of_peak:.1f}% of the fp32 matmul peak), peak RSS {result.peak_rss_mb:.0f} MB, "
                    f"losses {' '.join(f'{loss:.4f}' for loss in run.losses)}"
                )
    ratio = statistics.median(rates["bf16"]) / statistics.median(rates["fp32"])
    print(f"median effective tokens/s: fp32 {statistics.median(rates['fp32']):.1f}, "
          f"bf16 {statistics.median(rates['bf16']):.1f}: {ratio:.2f}x; load after: {os.getloadavg()}")
    gaps = [abs(ours - theirs) / theirs for ours, theirs in zip(losses["bf16"], losses["fp32"])]
    print(f"loss at equal steps, bf16 vs fp32: largest relative difference {100 * max(gaps):.2f}% over {len(gaps)} steps")


if __name__ == "__main__":
    main()

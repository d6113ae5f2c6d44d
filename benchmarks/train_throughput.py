"""Training throughput (issue 4): one fixed LoRA SFT run through glmtune, and LLaMA-Factory when available.

Both systems train the embedded default model on ../shared's alpaca_en_demo.json (read in
place), template smollm2, cutoff_len 512, batch 4, no gradient accumulation, lora rank 8 on all
linear layers, lr 2e-4 (cosine, no warm-up), fp32, for a fixed number of steps with a log record
every step, each in its own subprocess. Reported per system: effective (non-padding) tokens/s and
samples/s over the steps after the warm-up ones, peak RSS of the training process, loss per step,
and the fraction of this machine's measured fp32 matmul peak, at 4N FLOPs per token (LoRA), N being
every parameter of the base model, embeddings included (tied ones counted once).

Step times are the arrival times of the Trainer's per-step log lines on the child's stdout; token
counts and losses come from the run's trainer_state.json. Not part of the test suite.
Run: .venv/bin/python benchmarks/train_throughput.py [--peer-python /tmp/lf-venv/bin/python]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from peers import peer_python

DATA_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "llama_factory" / "alpaca_en_demo.json"
GLMTUNE = Path(sys.executable).with_name("glmtune")
LORA_FLOPS_PER_PARAMETER = 4  # forward 2N plus the backward pass through activations 2N; no weight gradients
SETTINGS = {
    "stage": "sft",
    "do_train": True,
    "finetuning_type": "lora",
    "lora_rank": 8,
    "lora_target": "all",
    "template": "smollm2",
    "cutoff_len": 512,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "learning_rate": 2e-4,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "seed": 42,
}


@dataclass
class Run:
    """What one training subprocess measured."""

    step_times: list[float]
    tokens_seen: list[int]
    losses: list[float]
    peak_rss_mb: float
    wall_s: float
    cpu_s: float
    train_runtime_s: float  # the Trainer's own clock over the whole training loop, first steps included


def default_model_path() -> Path:
    output = subprocess.run([str(GLMTUNE), "env", "--default-model-path"], capture_output=True, text=True, check=True)
    return Path(output.stdout.strip().splitlines()[-1])


def parameter_count(model_dir: Path) -> int:
    """Every stored weight of the checkpoint, read from the safetensors headers (tied weights are stored once)."""
    from safetensors import safe_open

    total = 0
    for shard in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as handle:
            for name in handle.keys():
                count = 1
                for size in handle.get_slice(name).get_shape():
                    count *= size
                total += count
    return total


def matmul_peak_flops(size: int = 2048, repeats: int = 10, rounds: int = 5) -> float:
    """Best fp32 FLOP/s of `repeats` back-to-back size x size matmuls, over `rounds`, at torch's default thread count."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best


def run_training(command: list[str], output_dir: Path, env: dict[str, str]) -> Run:
    """Run one training subprocess, stamping each per-step log line as it arrives, and read its trainer state."""
    stamps: list[float] = []
    stderr_path = output_dir.with_suffix(".stderr")
    start = time.perf_counter()
    with stderr_path.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        assert process.stdout is not None
        for line in process.stdout:
            if "'loss'" in line or '"loss"' in line:
                stamps.append(time.perf_counter())
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}):\n{stderr_path.read_text()[-4000:]}")
    history = json.loads((output_dir / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    steps = [record for record in history if "loss" in record]
    if len(steps) != len(stamps):
        raise RuntimeError(f"{len(stamps)} log lines on stdout but {len(steps)} loss records in trainer_state.json")
    return Run(
        step_times=stamps,
        tokens_seen=[int(record.get("num_input_tokens_seen", 0)) for record in steps],  # LLaMA-Factory DPO logs none
        losses=[float(record["loss"]) for record in steps],
        peak_rss_mb=usage.ru_maxrss / 1024,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        train_runtime_s=float(json.loads((output_dir / "train_results.json").read_text(encoding="utf-8"))["train_runtime"]),
    )


def run_glmtune(work: Path, length: dict[str, Any], extra: dict[str, str]) -> Run:
    output_dir = work / "glmtune"
    arguments = {**SETTINGS, **length, **extra, "dataset": str(DATA_FILE), "output_dir": str(output_dir)}
    command = [str(GLMTUNE), "train", *(f"--{key}={value}" for key, value in arguments.items())]
    return run_training(command, output_dir, {**os.environ, "PYTHONUNBUFFERED": "1"})


def run_llamafactory(python: str, work: Path, model_dir: Path, length: dict[str, Any]) -> Run:
    """The same settings as a LLaMA-Factory YAML, the dataset registered in a temporary dataset_info.json."""
    dataset_dir = work / "lf_data"
    dataset_dir.mkdir()
    info = {"alpaca_en_demo": {"file_name": str(DATA_FILE)}}
    (dataset_dir / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    output_dir = work / "llamafactory"
    config = {
        **SETTINGS,
        **length,
        "model_name_or_path": str(model_dir),
        "dataset": "alpaca_en_demo",
        "dataset_dir": str(dataset_dir),
        "output_dir": str(output_dir),
        "include_num_input_tokens_seen": "non_padding",  # glmtune counts non-padding tokens by itself
    }
    config_path = work / "llamafactory.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
    return run_training([python, "-m", "llamafactory.cli", "train", str(config_path)], output_dir, env)


def run_length(max_steps: int, epoch_samples: int | None, sampler: str) -> dict[str, Any]:
    """The settings that fix how much both systems train, and in which order they read the rows."""
    length: dict[str, Any] = (
        {"max_steps": max_steps} if epoch_samples is None else {"max_samples": epoch_samples, "num_train_epochs": 1}
    )
    if sampler == "sequential":
        length["train_sampling_strategy"] = "sequential"
    return length


@dataclass
class Figures:
    tokens_per_s: float
    samples_per_s: float
    fraction_of_peak: float
    peak_rss_mb: float
    mean_loss: float


def figures(run: Run, warmup: int, batch_size: int, flops_per_token: float, peak: float) -> Figures:
    """Rates over the steps after the first `warmup` (from the end of step `warmup` to the end of the last)."""
    elapsed = run.step_times[-1] - run.step_times[warmup - 1]
    tokens = run.tokens_seen[-1] - run.tokens_seen[warmup - 1]
    steps = len(run.step_times) - warmup
    rate = tokens / elapsed
    return Figures(
        tokens_per_s=rate,
        samples_per_s=steps * batch_size / elapsed,
        fraction_of_peak=rate * flops_per_token / peak,
        peak_rss_mb=run.peak_rss_mb,
        mean_loss=sum(run.losses) / len(run.losses),
    )


def whole_loop_rate(run: Run) -> float:
    """Every token over the whole training loop: in epoch mode both systems see the same tokens, so this is
    the user's time ratio, whatever order each system's sampler reads them in."""
    return run.tokens_seen[-1] / run.train_runtime_s


def report(name: str, run: Run, result: Figures) -> None:
    print(f"\n{name}: wall {run.wall_s:.1f} s, CPU {run.cpu_s:.1f} s (process start to exit, all steps)")
    print(f"  training loop {run.train_runtime_s:.1f} s (train_runtime): {whole_loop_rate(run):.1f} effective tokens/s")
    print("  step  loss     tokens seen  step s")
    gaps = [later - earlier for earlier, later in zip(run.step_times, run.step_times[1:])]
    for step, (loss, tokens) in enumerate(zip(run.losses, run.tokens_seen), start=1):
        gap = f"{gaps[step - 2]:6.2f}" if step > 1 else "     -"
        print(f"  {step:4d}  {loss:7.4f}  {tokens:11d}  {gap}")
    print(
        f"  effective tokens/s {result.tokens_per_s:.1f}, samples/s {result.samples_per_s:.2f}, "
        f"{100 * result.fraction_of_peak:.1f}% of the fp32 matmul peak, peak RSS {result.peak_rss_mb:.0f} MB, "
        f"mean loss {result.mean_loss:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument(
        "--epoch-samples",
        type=int,
        help="instead of --max-steps: one full epoch over the first N samples (both systems then train on the same rows)",
    )
    parser.add_argument(
        "--sampler",
        choices=("default", "sequential"),
        default="default",
        help="default: each system's own sampler (glmtune groups by length, LLaMA-Factory shuffles); "
        "sequential: both read the rows in file order, so every step sees the same batch in both",
    )
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps left out of the rates")
    parser.add_argument(
        "--glmtune-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra glmtune setting, e.g. activation_checkpointing=true (LLaMA-Factory checkpoints by default)",
    )
    parser.add_argument("--peer-python", help="an interpreter that can import llamafactory")
    parser.add_argument(
        "--repeats", type=int, default=1, help="run both systems this many times, alternating, and report the median ratios"
    )
    options = parser.parse_args()
    if options.epoch_samples is None and options.max_steps <= options.warmup_steps:
        parser.error("--max-steps must exceed --warmup-steps")
    length = run_length(options.max_steps, options.epoch_samples, options.sampler)
    import torch

    model_dir = default_model_path()
    n_parameters = parameter_count(model_dir)
    flops_per_token = LORA_FLOPS_PER_PARAMETER * n_parameters
    peak = matmul_peak_flops()
    print(f"model {model_dir.name}: N = {n_parameters / 1e6:.1f}M parameters (all, embeddings included)")
    print(f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s (2048x2048, {torch.get_num_threads()} threads); 4N FLOPs/token")
    print(f"run length {length}, rates exclude the first {options.warmup_steps} steps; load: {os.getloadavg()}")
    batch_size = SETTINGS["per_device_train_batch_size"]
    peer = peer_python(options.peer_python)
    ratios: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="glmtune-train-bench-") as directory:
        for repeat in range(1, options.repeats + 1):
            work = Path(directory) / f"run{repeat}"
            work.mkdir()
            if options.repeats > 1:
                print(f"\n=== run {repeat} of {options.repeats} ===")
            ours_run = run_glmtune(work, length, dict(setting.split("=", 1) for setting in options.glmtune_setting))
            ours = figures(ours_run, options.warmup_steps, batch_size, flops_per_token, peak)
            report("glmtune", ours_run, ours)
            if peer is None:
                print("\nllamafactory is not importable here and no --peer-python was given: glmtune figures only")
                continue
            theirs_run = run_llamafactory(peer, work, model_dir, length)
            theirs = figures(theirs_run, options.warmup_steps, batch_size, flops_per_token, peak)
            report("LLaMA-Factory", theirs_run, theirs)
            ratios.append(compare(ours_run, ours, theirs_run, theirs))
    if len(ratios) > 1:
        print(
            f"\nmedian over {len(ratios)} alternating runs: effective tokens/s "
            f"{statistics.median(speed for speed, _ in ratios):.2f}x, "
            f"training loop {statistics.median(loop for _, loop in ratios):.2f}x (target >= 2.5x)"
        )


def compare(ours_run: Run, ours: Figures, theirs_run: Run, theirs: Figures) -> tuple[float, float]:
    """Print glmtune / LLaMA-Factory ratios against the targets; return the tokens/s and training-loop ratios."""
    speed = ours.tokens_per_s / theirs.tokens_per_s
    loop = whole_loop_rate(ours_run) / whole_loop_rate(theirs_run)
    print(f"\nload after: {os.getloadavg()}")
    print(f"glmtune / LLaMA-Factory effective tokens/s: {speed:.2f}x (target >= 2.5x)")
    print(f"glmtune / LLaMA-Factory samples/s: {ours.samples_per_s / theirs.samples_per_s:.2f}x")
    print(f"glmtune / LLaMA-Factory effective tokens/s over the whole training loop (train_runtime, all steps): {loop:.2f}x")
    print(f"glmtune fraction of matmul peak: {100 * ours.fraction_of_peak:.1f}% (target >= 50%)")
    print(f"glmtune / LLaMA-Factory peak RSS: {ours.peak_rss_mb / theirs.peak_rss_mb:.2f}x (target <= 0.75x)")
    print(
        "glmtune / LLaMA-Factory whole-run CPU seconds per effective token: "
        f"{(ours_run.cpu_s / ours_run.tokens_seen[-1]) / (theirs_run.cpu_s / theirs_run.tokens_seen[-1]):.2f}x"
        " (includes start-up and data loading; less disturbed by other load than wall time)"
    )
    print(
        f"mean loss over {len(ours_run.losses)} steps: glmtune {ours.mean_loss:.4f}, LLaMA-Factory {theirs.mean_loss:.4f}"
    )
    return speed, loop

if __name__ == "__main__":
    main()

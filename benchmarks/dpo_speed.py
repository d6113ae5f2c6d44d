"""DPO speed (issue 13, item 10): one fixed LoRA DPO run through glmtune and through LLaMA-Factory 0.9.5.

Both systems train the embedded default model on the bundled preference pairs
(src/glmtune/resources/preference.json, registered for LLaMA-Factory in a temporary
dataset_info.json with `ranking: true`), template smollm2 with the same system prompt, sigmoid
loss, pref_beta 0.1, batch 4 pairs, no gradient accumulation, lora rank 8 on all linear layers,
lr 1e-4 (cosine, no warm-up), fp32, seed 42, rows read in file order (glmtune's sequential sampler,
LLaMA-Factory's disable_shuffling), a log record every step, each system in its own subprocess.
Reported per system: pairs/s over the steps after the warm-up ones (per-step log lines stamped as
they arrive on the child's stdout) and over the whole training loop (train_runtime), peak RSS of the
training process (os.wait4), and the loss of every step (trainer_state.json), side by side.
Not part of the test suite. Time it alone on the machine (e.g. under flock with other timed work).
Run: .venv/bin/python benchmarks/dpo_speed.py [--peer-python /tmp/lf-venv/bin/python] [--with-stock]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from peers import peer_python
from train_throughput import Run, default_model_path, run_training

DATA_FILE = Path(__file__).resolve().parents[1] / "src" / "glmtune" / "resources" / "preference.json"
GLMTUNE = Path(sys.executable).with_name("glmtune")
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # glmtune's smollm2 default
SETTINGS: dict[str, Any] = {
    "stage": "dpo",
    "do_train": True,
    "finetuning_type": "lora",
    "lora_rank": 8,
    "lora_target": "all",
    "template": "smollm2",
    "cutoff_len": 1024,
    "pref_beta": 0.1,
    "pref_loss": "sigmoid",
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1e-4,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "seed": 42,
}


def run_glmtune(work: Path, name: str, max_steps: int, extra: dict[str, str]) -> Run:
    output_dir = work / name
    arguments = {**SETTINGS, **extra, "max_steps": max_steps, "train_sampling_strategy": "sequential",
                 "dataset": str(DATA_FILE), "output_dir": str(output_dir)}  # fmt: skip
    command = [str(GLMTUNE), "train", *(f"--{key}={value}" for key, value in arguments.items())]
    return run_training(command, output_dir, {**os.environ, "PYTHONUNBUFFERED": "1"})


def run_llamafactory(python: str, work: Path, model_dir: Path, max_steps: int) -> Run:
    """The same settings as a LLaMA-Factory YAML, the pairs registered in a temporary dataset_info.json."""
    dataset_dir = work / "lf_data"
    dataset_dir.mkdir(exist_ok=True)
    columns = {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}
    info = {"preference": {"file_name": str(DATA_FILE), "formatting": "alpaca", "ranking": True, "columns": columns}}
    (dataset_dir / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    output_dir = work / "llamafactory"
    config = {
        **SETTINGS,
        "max_steps": max_steps,
        "disable_shuffling": True,
        "default_system": SYSTEM,
        "model_name_or_path": str(model_dir),
        "dataset": "preference",
        "dataset_dir": str(dataset_dir),
        "output_dir": str(output_dir),
    }
    config_path = work / "llamafactory.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    return run_training([python, "-m", "llamafactory.cli", "train", str(config_path)], output_dir, env)


def pairs_per_s(run: Run, warmup: int) -> float:
    """Pairs per second from the end of step `warmup` to the end of the last step."""
    steps = len(run.step_times) - warmup
    return steps * SETTINGS["per_device_train_batch_size"] / (run.step_times[-1] - run.step_times[warmup - 1])


def loop_pairs_per_s(run: Run) -> float:
    """Every step's pairs over the Trainer's own clock (train_runtime: the first steps included)."""
    return len(run.losses) * SETTINGS["per_device_train_batch_size"] / run.train_runtime_s


def report(runs: dict[str, Run], warmup: int) -> None:
    print(f"\n{'system':<16} {'pairs/s':>8} {'loop pairs/s':>13} {'peak RSS MB':>12} {'wall s':>7} {'CPU s':>7}")
    for name, run in runs.items():
        print(f"{name:<16} {pairs_per_s(run, warmup):8.2f} {loop_pairs_per_s(run):13.2f} {run.peak_rss_mb:12.0f} "
              f"{run.wall_s:7.1f} {run.cpu_s:7.1f}")  # fmt: skip
    names = list(runs)
    print("\nloss per step\n step " + " ".join(f"{name:>16}" for name in names))
    for step in range(max(len(run.losses) for run in runs.values())):
        cells = [f"{run.losses[step]:16.4f}" if step < len(run.losses) else " " * 16 for run in runs.values()]
        print(f"{step + 1:5d} " + " ".join(cells))


def compare(ours: Run, theirs: Run, warmup: int) -> dict[str, float]:
    ratios = {
        "pairs/s": pairs_per_s(ours, warmup) / pairs_per_s(theirs, warmup),
        "loop pairs/s": loop_pairs_per_s(ours) / loop_pairs_per_s(theirs),
        "peak RSS": ours.peak_rss_mb / theirs.peak_rss_mb,
        "max loss gap": max(abs(a - b) for a, b in zip(ours.losses, theirs.losses, strict=True)),
    }
    print(f"\nglmtune / LLaMA-Factory: pairs/s {ratios['pairs/s']:.2f}x, training loop {ratios['loop pairs/s']:.2f}x "
          f"(target >= 2x); peak RSS {ratios['peak RSS']:.2f}x (target <= 0.75x); largest loss gap at equal steps "
          f"{ratios['max loss gap']:.4f}")  # fmt: skip
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=10, help="10 steps of 4 pairs: one epoch of the 40 pairs")
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps left out of the pairs/s figure")
    parser.add_argument("--peer-python", help="an interpreter that can import llamafactory")
    parser.add_argument("--with-stock", action="store_true", help="also glmtune with micro_batch_tokens=0: TRL's own padded computation")
    parser.add_argument("--repeats", type=int, default=1, help="run the systems this many times, alternating; median ratios")
    options = parser.parse_args()
    if options.max_steps <= options.warmup_steps:
        parser.error("--max-steps must exceed --warmup-steps")
    model_dir = default_model_path()
    peer = peer_python(options.peer_python)
    print(f"model {model_dir}; settings {SETTINGS}; {options.max_steps} steps; load {os.getloadavg()}")
    all_ratios: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="glmtune-dpo-bench-") as directory:
        for repeat in range(1, options.repeats + 1):
            work = Path(directory) / f"run{repeat}"
            work.mkdir()
            print(f"\n=== run {repeat} of {options.repeats} ===")
            runs = {"glmtune": run_glmtune(work, "glmtune", options.max_steps, {})}
            if options.with_stock:
                runs["glmtune stock"] = run_glmtune(work, "stock", options.max_steps, {"micro_batch_tokens": "0"})
            if peer is not None:
                runs["LLaMA-Factory"] = run_llamafactory(peer, work, model_dir, options.max_steps)
            report(runs, options.warmup_steps)
            if peer is None:
                print("\nllamafactory is not importable here and no --peer-python was given: glmtune figures only")
                continue
            all_ratios.append(compare(runs["glmtune"], runs["LLaMA-Factory"], options.warmup_steps))
            print(f"load after: {os.getloadavg()}")
    if len(all_ratios) > 1:
        medians = {key: statistics.median(ratios[key] for ratios in all_ratios) for key in all_ratios[0]}
        print(f"\nmedians over {len(all_ratios)} runs: " + ", ".join(f"{key} {value:.3g}" for key, value in medians.items()))


if __name__ == "__main__":
    main()

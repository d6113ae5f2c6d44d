"""Quality (issues 5, 15): the default model as is vs LoRA, freeze, P-Tuning v2 and full under one wall-time budget each.

Two tasks, each with a held-out split that training never sees (`val_size` rows under seed
42; `glmtune eval --val_size` predicts on exactly those rows):
- math_4op (bundled generator, 2,000 rows): exact-match accuracy of the final answer (the
  last whole number in the prediction against the one after `=` in the label), plus BLEU-4;
- alpaca_en_demo.json from ../shared (999 rows): BLEU-4 and ROUGE-1/2/L F (glmtune's metrics).
Every model's held-out loss (the base model's included) comes from `glmtune eval`'s eval_loss, and
its retention from `glmtune eval --task qa --dataset retention_qa` (bundled general-knowledge questions,
en + zh): its accuracy over the base model's (for the tasks named by --retention).
Every fine-tune is a normal `glmtune train` subprocess (template smollm2, glmtune's learning
rate for the method, constant schedule, random sample order, no checkpoints) that gets SIGTERM
once `--budget` seconds have passed since it started (model loading and preprocessing
included); glmtune's graceful stop finishes the step in progress and saves. Each model is then
scored by a `glmtune eval` subprocess (greedy). Subprocesses run one at a time on --threads
torch threads. Results go to stdout as a Markdown table and to --results-json as they come.
Not part of the test suite.
Run: .venv/bin/python benchmarks/quality.py [--budget 120 --threads 1 --results-json quality.json]
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "llama_factory" / "alpaca_en_demo.json"
GLMTUNE = Path(sys.executable).with_name("glmtune")
METHODS = ("lora", "freeze", "p_tuning", "full")
LAST_NUMBER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str
    val_size: int
    cutoff_len: int
    train_batch_size: int
    max_new_tokens: int


TASKS = (
    Task("math_4op", "math_4op", val_size=40, cutoff_len=96, train_batch_size=8, max_new_tokens=24),
    Task("alpaca_en", str(DATA_FILE), val_size=16, cutoff_len=256, train_batch_size=4, max_new_tokens=48),
)


@dataclass
class Score:
    task: str
    method: str
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    train_seconds: float = 0.0
    eval_loss: float | None = None
    general_accuracy: float | None = None  # retention_qa accuracy


def run(command: list[str], env: dict[str, str], log: Path, budget: float | None = None) -> float:
    """Run a subprocess, logging its output; past `budget` seconds it gets SIGTERM (a graceful stop). Returns wall s."""
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            process.wait()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({process.returncode}):\n{log.read_text()[-3000:]}")
    return time.perf_counter() - start


def train(task: Task, method: str, output_dir: Path, budget: float, env: dict[str, str], settings: list[str]) -> Score:
    command = [
        str(GLMTUNE), "train", "--stage", "sft", "--finetuning_type", method, "--dataset", task.dataset,
        "--template", "smollm2", "--val_size", str(task.val_size), "--cutoff_len", str(task.cutoff_len),
        "--per_device_train_batch_size", str(task.train_batch_size), "--max_steps", "100000",
        "--lr_scheduler_type", "constant", "--warmup_steps", "0", "--train_sampling_strategy", "random",
        "--logging_steps", "1", "--save_strategy", "no", "--seed", "42", "--output_dir", str(output_dir),
        *(part for setting in settings for part in (f"--{setting.partition('=')[0]}", setting.partition("=")[2])),
    ]  # fmt: skip
    run(command, env, output_dir.with_suffix(".train.log"), budget)
    results = json.loads((output_dir / "all_results.json").read_text(encoding="utf-8"))
    state = json.loads((output_dir / "trainer_state.json").read_text(encoding="utf-8"))
    return Score(task.name, method, steps=state["global_step"], train_seconds=results["train_runtime"], eval_loss=results.get("eval_loss"))


def evaluate(task: Task, model_flags: list[str], output_dir: Path, env: dict[str, str]) -> dict[str, float]:
    command = [
        str(GLMTUNE), "eval", *model_flags, "--dataset", task.dataset, "--template", "smollm2",
        "--val_size", str(task.val_size), "--max_new_tokens", str(task.max_new_tokens),
        "--per_device_eval_batch_size", "8", "--output_dir", str(output_dir),
    ]  # fmt: skip
    run(command, env, output_dir.with_suffix(".eval.log"))
    metrics = json.loads((output_dir / "predict_results.json").read_text(encoding="utf-8"))
    if task.name == "math_4op":
        metrics["accuracy"] = exact_match(output_dir / "generated_predictions.jsonl")
    return metrics


def final_number(text: str) -> str | None:
    numbers = LAST_NUMBER.findall(text)
    return numbers[-1] if numbers else None


def exact_match(predictions_file: Path) -> float:
    """Share of samples (x100) whose last number equals the label's answer (`84 / 12 = 7` -> 7)."""
    lines = [json.loads(line) for line in predictions_file.read_text(encoding="utf-8").splitlines()]
    right = sum(final_number(line["predict"]) == final_number(line["label"].rsplit("=", 1)[-1]) for line in lines)
    return round(100 * right / len(lines), 2)


def general_knowledge(model_flags: list[str], output_dir: Path, env: dict[str, str]) -> float:
    command = [str(GLMTUNE), "eval", "--task", "qa", "--dataset", "retention_qa", *model_flags, "--template", "smollm2",
               "--per_device_eval_batch_size", "16", "--output_dir", str(output_dir)]  # fmt: skip
    run(command, env, output_dir.with_suffix(".qa.log"))
    return json.loads((output_dir / "qa_results.json").read_text(encoding="utf-8"))["accuracy"]


def model_flags(method: str, output_dir: Path) -> list[str]:
    """Freeze and full tuning save a whole model; lora and p_tuning save adapters on the default base."""
    if method in ("freeze", "full"):
        return ["--model_name_or_path", str(output_dir)]
    return ["--adapter_name_or_path", str(output_dir)]


def table(scores: list[Score]) -> str:
    columns = ["base", *METHODS]
    by_key = {(score.task, score.method): score for score in scores}
    rows = [
        ("math_4op exact match %", "math_4op", lambda s: s.metrics.get("accuracy")),
        ("math_4op BLEU-4", "math_4op", lambda s: s.metrics.get("bleu-4")),
        ("alpaca_en BLEU-4", "alpaca_en", lambda s: s.metrics.get("bleu-4")),
        ("alpaca_en ROUGE-1", "alpaca_en", lambda s: s.metrics.get("rouge-1")),
        ("alpaca_en ROUGE-2", "alpaca_en", lambda s: s.metrics.get("rouge-2")),
        ("alpaca_en ROUGE-L", "alpaca_en", lambda s: s.metrics.get("rouge-l")),
        ("math_4op steps / train s", "math_4op", lambda s: f"{s.steps} / {s.train_seconds:.0f}" if s.steps else None),
        ("alpaca_en steps / train s", "alpaca_en", lambda s: f"{s.steps} / {s.train_seconds:.0f}" if s.steps else None),
        ("math_4op held-out loss", "math_4op", lambda s: s.metrics.get("eval_loss")),
        ("alpaca_en held-out loss", "alpaca_en", lambda s: s.metrics.get("eval_loss")),
        *(
            (f"retention_qa after {task.name}: accuracy % (retention %)", task.name,
             lambda s, task=task: None if s.general_accuracy is None else
             f"{s.general_accuracy:.2f} ({100 * s.general_accuracy / max(by_key[(task.name, 'base')].general_accuracy or 1e-9, 1e-9):.0f}%)")
            for task in TASKS
        ),
    ]  # fmt: skip
    lines = ["| score | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for label, task, value in rows:
        cells = []
        for method in columns:
            score = by_key.get((task, method))
            cell = value(score) if score else None
            cells.append("-" if cell is None else (f"{cell:.2f}" if isinstance(cell, float) else str(cell)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per fine-tune, from process start")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per subprocess")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--results-json", type=Path, default=Path("quality_results.json"))
    parser.add_argument("--retention", default="math_4op,alpaca_en", help="tasks whose fine-tunes answer retention_qa")
    parser.add_argument("--tasks", default=",".join(task.name for task in TASKS), help="tasks to run, comma-separated")
    parser.add_argument("--val-size", action="append", default=[], help="held-out rows of a task, NAME=N (repeatable)")
    parser.add_argument("--train-setting", action="append", default=[], help="extra glmtune setting for every fine-tune, key=value")
    options = parser.parse_args()
    val_sizes = {name: int(size) for name, _, size in (item.partition("=") for item in options.val_size)}
    tasks = [replace(task, val_size=val_sizes.get(task.name, task.val_size)) for task in TASKS if task.name in options.tasks.split(",")]
    threads = str(options.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}
    print(f"budget {options.budget:.0f} s per fine-tune, {threads} thread(s); load before: {os.getloadavg()}", flush=True)
    scores: list[Score] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="glmtune-quality-") as directory:
        work = Path(directory)
        retention = options.retention.split(",") if options.retention else []
        general = general_knowledge([], work / "base-retention", env) if retention else None
        for task in tasks:
            scores.append(Score(task.name, "base", metrics=evaluate(task, [], work / f"base-{task.name}", env)))
            scores[-1].general_accuracy = general if task.name in retention else None
            print(f"base {task.name}: {scores[-1].metrics}", flush=True)
            options.results_json.write_text(json.dumps([asdict(s) for s in scores], indent=1), encoding="utf-8")
        for method in options.methods.split(","):
            for task in tasks:
                output_dir = work / f"{method}-{task.name}"
                score = train(task, method, output_dir, options.budget, env, options.train_setting)
                score.metrics = evaluate(task, model_flags(method, output_dir), work / f"eval-{method}-{task.name}", env)
                if task.name in retention:
                    score.general_accuracy = general_knowledge(model_flags(method, output_dir), work / f"qa-{method}-{task.name}", env)
                scores.append(score)
                print(f"{method} {task.name}: {score.steps} steps, {score.metrics}", flush=True)
                options.results_json.write_text(json.dumps([asdict(s) for s in scores], indent=1), encoding="utf-8")
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load after: {os.getloadavg()}\n")
    print(table(scores))


if __name__ == "__main__":
    main()

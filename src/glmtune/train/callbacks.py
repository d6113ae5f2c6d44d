"""Trainer callbacks: metrics JSONL, complete-checkpoint markers and the final summary line."""

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from glmtune.metrics_file import METRICS_FILE
from glmtune.paths import mark_complete


def peak_memory_mb() -> float:
    """Peak GPU memory when training on CUDA, else the process's peak resident set size."""
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak_kb / 1024 if sys.platform != "darwin" else peak_kb / 2**20


class MetricsLogger(TrainerCallback):
    """Append every log record, with tokens/s since the previous one, to output_dir/metrics.jsonl."""

    def __init__(self) -> None:
        self.last_time: float | None = None
        self.last_tokens = 0
        self.start_tokens = 0  # tokens counted before this session (a resumed run's earlier ones)
        self.start_step = 0  # steps trained before this session

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.last_time, self.last_tokens = time.perf_counter(), state.num_input_tokens_seen
        self.start_tokens, self.start_step = state.num_input_tokens_seen, state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        now = time.perf_counter()
        record = {"step": state.global_step, **logs}
        if "loss" in logs and self.last_time is not None and now > self.last_time:
            record["tokens_per_second"] = round((state.num_input_tokens_seen - self.last_tokens) / (now - self.last_time), 2)
            self.last_time, self.last_tokens = now, state.num_input_tokens_seen
        with (Path(args.output_dir) / METRICS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


class CompleteCheckpointMarker(TrainerCallback):
    """Mark a checkpoint complete only after the Trainer has written all of its files.

    Under torchrun every process writes its own RNG state into the checkpoint, and the Trainer does not
    wait for them before this callback, so the first process marks it only once all have reached here.
    """

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from accelerate import PartialState

        PartialState().wait_for_everyone()
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                mark_complete(checkpoint)


def whole_run_loss(session_loss: float, start_step: int, end_step: int, log_history: list[dict[str, Any]]) -> float:
    """The mean training loss over every step of the run, not only this session's.

    The Trainer's `train_loss` averages the steps trained in this call; after a resume the earlier
    steps' losses are in the log history restored from the checkpoint, each record the mean over the
    steps since the record before. Their step-weighted mean stands for the earlier steps (exact when
    the checkpoint step was a logging step).
    """
    if start_step <= 0 or end_step <= start_step:
        return session_loss
    earlier = sorted((r["step"], r["loss"]) for r in log_history if "loss" in r and 0 < r.get("step", 0) <= start_step)
    if not earlier:
        return session_loss
    steps = [step for step, _ in earlier]
    spans = [step - previous for step, previous in zip(steps, [0, *steps[:-1]])]
    earlier_mean = sum(loss * span for (_, loss), span in zip(earlier, spans)) / steps[-1]
    return (earlier_mean * start_step + session_loss * (end_step - start_step)) / end_step


def summary_line(metrics: dict[str, Any], tokens: int) -> str:
    """One line a person can compare across runs: time, samples/s, effective tokens/s, peak memory."""
    runtime = metrics.get("train_runtime", 0.0)
    rate = tokens / runtime if runtime else 0.0
    return (
        f"train summary: runtime {runtime:.1f} s, {metrics.get('train_samples_per_second', 0.0):.2f} samples/s, "
        f"{rate:.1f} effective tokens/s (non-padding), peak memory {peak_memory_mb():.0f} MB"
        + (f" (estimate {metrics['estimated_peak_memory_mb']:.0f} MB), " if "estimated_peak_memory_mb" in metrics else ", ")
        + f"final loss {metrics.get('train_loss', float('nan')):.4f}"
    )

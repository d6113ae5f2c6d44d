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

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.last_time, self.last_tokens = time.perf_counter(), state.num_input_tokens_seen
        self.start_tokens = state.num_input_tokens_seen

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
    """Mark a checkpoint complete only after the Trainer has written all of its files."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                mark_complete(checkpoint)


def summary_line(metrics: dict[str, Any], tokens: int) -> str:
    """One line a person can compare across runs: time, samples/s, effective tokens/s, peak memory."""
    runtime = metrics.get("train_runtime", 0.0)
    rate = tokens / runtime if runtime else 0.0
    return (
        f"train summary: runtime {runtime:.1f} s, {metrics.get('train_samples_per_second', 0.0):.2f} samples/s, "
        f"{rate:.1f} effective tokens/s (non-padding), peak memory {peak_memory_mb():.0f} MB, "
        f"final loss {metrics.get('train_loss', float('nan')):.4f}"
    )

"""What the page shows of a running job: the end of its log, its step progress and its loss curve."""

import re
from pathlib import Path

import pandas as pd

from glmtune.metrics_file import read_metric, smooth

TAIL_BYTES = 16_000
LOG_LINES = 40  # what the log box shows: the newest lines, without scrolling
# The Trainer's progress bar: "  50%|█████     | 2/4 [00:01<00:01, ...]". Data-processing
# bars carry a description before the percentage ("Map: 50%|..."), so they do not match.
TRAIN_BAR = re.compile(r"(?:^|[\r\n])\s*\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+) \[")


def raw_tail(path: Path, size: int = TAIL_BYTES) -> str:
    """The last `size` bytes of a log, as written (progress bars redraw themselves with carriage returns)."""
    if not path.is_file():
        return ""
    with path.open("rb") as handle:
        handle.seek(max(0, handle.seek(0, 2) - size))
        return handle.read().decode("utf-8", errors="replace")


def readable(log_text: str, lines: int = LOG_LINES) -> str:
    """The last lines of a raw log, each progress-bar line reduced to its latest redraw."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in log_text.split("\n")[-lines:])


def training_progress(log_text: str) -> tuple[int, int] | None:
    """(step, total steps) from the newest Trainer progress bar in a raw log, or None before training."""
    matches = TRAIN_BAR.findall(log_text)
    return (int(matches[-1][0]), int(matches[-1][1])) if matches else None


def loss_frame(output_dir: Path) -> pd.DataFrame:
    """Loss per step, raw and smoothed, in the long form a line plot colours by series."""
    steps, losses = read_metric(output_dir, "loss")
    frame = pd.DataFrame(
        {
            "step": steps * 2,
            "loss": losses + smooth(losses),
            "series": ["train loss"] * len(steps) + ["smoothed"] * len(steps),
        }
    )
    eval_steps, eval_losses = read_metric(output_dir, "eval_loss")
    if eval_steps:
        frame = pd.concat([frame, pd.DataFrame({"step": eval_steps, "loss": eval_losses, "series": "eval loss"})])
    return frame

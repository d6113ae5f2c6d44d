"""metrics.jsonl, the record a training run appends at every log step, and how to read a series back.

It lives outside `glmtune.train` so that readers (the web UI's loss plot) need not import the
training stack: nothing here imports more than the standard library.
"""

import json
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


def read_metric(output_dir: Path, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the records that carry `key`, in file order; empty before the first record."""
    steps, values = [], []
    path = output_dir / METRICS_FILE
    if not path.is_file():
        return steps, values
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if key in record:
            steps.append(record["step"])
            values.append(record[key])
    return steps, values


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction, so early points are not pulled to zero."""
    smoothed, average = [], 0.0
    for index, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        smoothed.append(average / (1 - weight**index))
    return smoothed

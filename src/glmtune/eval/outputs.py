"""The two files an evaluation leaves in its output dir, each written whole or not at all.

Readers (the web UI polls these) must never see a half-written file, so each is written
to a temporary file in the same folder and renamed over the target, which is atomic.
Readers import this module for the file names, so it imports nothing of the model stack.
"""

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from glmtune.paths import write_atomically

PREDICTIONS_FILE = "generated_predictions.jsonl"
RESULTS_FILE = "predict_results.json"


@dataclass(frozen=True)
class Prediction:
    """One line of generated_predictions.jsonl: the prompt as the model saw it, the reference and the answer."""

    prompt: str
    label: str
    predict: str


def write_predictions(output_dir: str | Path, predictions: Iterable[Prediction]) -> Path:
    """generated_predictions.jsonl: one {"prompt", "label", "predict"} object per line, in dataset order."""
    lines = (json.dumps(asdict(prediction), ensure_ascii=False) + "\n" for prediction in predictions)
    return write_atomically(Path(output_dir) / PREDICTIONS_FILE, "".join(lines))


def write_results(output_dir: str | Path, results: dict[str, Any]) -> Path:
    """predict_results.json: the metrics (bleu-4, rouge-1, rouge-2, rouge-l) with sample count and runtime."""
    return write_atomically(Path(output_dir) / RESULTS_FILE, json.dumps(results, ensure_ascii=False, indent=2) + "\n")

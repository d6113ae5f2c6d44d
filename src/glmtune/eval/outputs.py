"""The two files an evaluation leaves in its output dir, each written whole or not at all.

Readers (the web UI polls these) must never see a half-written file, so each is written
to a temporary file in the same folder and renamed over the target, which is atomic.
Readers import this module for the file names, so it imports nothing of the model stack.
"""

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PREDICTIONS_FILE = "generated_predictions.jsonl"
RESULTS_FILE = "predict_results.json"


@dataclass(frozen=True)
class Prediction:
    """One line of generated_predictions.jsonl: the prompt as the model saw it, the reference and the answer."""

    prompt: str
    label: str
    predict: str


def write_atomically(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_predictions(output_dir: str | Path, predictions: Iterable[Prediction]) -> Path:
    """generated_predictions.jsonl: one {"prompt", "label", "predict"} object per line, in dataset order."""
    lines = (json.dumps(asdict(prediction), ensure_ascii=False) + "\n" for prediction in predictions)
    return write_atomically(Path(output_dir) / PREDICTIONS_FILE, "".join(lines))


def write_results(output_dir: str | Path, results: dict[str, Any]) -> Path:
    """predict_results.json: the metrics (bleu-4, rouge-1, rouge-2, rouge-l) with sample count and runtime."""
    return write_atomically(Path(output_dir) / RESULTS_FILE, json.dumps(results, ensure_ascii=False, indent=2) + "\n")

"""Evaluate tab logic: run `glmtune eval` on a checkpoint and read back its metrics and predictions.

The contract with `glmtune eval`: OUT/predict_results.json holds the metrics (bleu-4,
rouge-1, rouge-2, rouge-l and counts); OUT/generated_predictions.jsonl holds one
{"prompt", "label", "predict"} object per line.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmtune.errors import ConfigError
from glmtune.eval.outputs import PREDICTIONS_FILE, RESULTS_FILE
from glmtune.webui.forms import (
    adapter_setting,
    chosen_datasets,
    dataset_dir_setting,
    model_setting,
    output_setting,
    settings_argv,
)
from glmtune.webui.jobs import JobManager, JobRecord, glmtune_command
from glmtune.webui.workspace import Workspace

PREDICTION_COLUMNS = ("prompt", "label", "predict")
SHOWN_PREDICTIONS = 5


@dataclass
class EvalForm:
    model: str
    adapter: str
    dataset_dir: str
    dataset: str
    template: str
    max_samples: int
    output_dir: str


def eval_argv(workspace: Workspace, form: EvalForm) -> tuple[list[str], Path]:
    """`glmtune eval` flags for the form, and the results folder."""
    output_dir = output_setting(workspace, form.output_dir, "results folder")
    settings = {
        "model_name_or_path": model_setting(workspace, form.model),
        "adapter_name_or_path": adapter_setting(workspace, form.adapter, required=True),
        "dataset": chosen_datasets(workspace, form.dataset_dir, form.dataset),
        "dataset_dir": dataset_dir_setting(workspace, form.dataset_dir),
        "template": form.template,
        "max_samples": int(form.max_samples),
        "output_dir": str(output_dir),
    }
    if settings["max_samples"] <= 0:
        raise ConfigError("samples to evaluate: must be at least 1")
    return settings_argv(settings), output_dir


def start_eval(workspace: Workspace, jobs: JobManager, form: EvalForm) -> JobRecord:
    argv, output_dir = eval_argv(workspace, form)
    return jobs.start("eval", glmtune_command(workspace.root, "eval", *argv), output_dir)


def read_metrics(output_dir: Path) -> list[list[Any]]:
    """[[metric, value], ...] from predict_results.json; empty until the run has written it."""
    path = output_dir / RESULTS_FILE
    if not path.is_file():
        return []
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(metrics, dict):
        raise ConfigError(f"{path}: expected an object of metric names to values")
    return [[name, round(value, 4) if isinstance(value, float) else value] for name, value in metrics.items()]


def read_predictions(output_dir: Path, limit: int = SHOWN_PREDICTIONS) -> list[list[str]]:
    """The first `limit` rows of generated_predictions.jsonl as [prompt, label, predict]."""
    path = output_dir / PREDICTIONS_FILE
    if not path.is_file():
        return []
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if len(rows) == limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigError(f"{path}, line {number}: not valid JSON: {error}") from error
            rows.append([str(record.get(column, "")) for column in PREDICTION_COLUMNS])
    return rows

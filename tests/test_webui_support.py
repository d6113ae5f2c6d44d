"""Shared pieces of the web UI tests (no tests here): a workspace with a tiny model and a dataset, and forms."""

import json
import shutil
import time
from pathlib import Path

from train_helpers import write_sft_data

from glmtune.webui.jobs import JobManager, JobRecord
from glmtune.webui.train_job import TrainForm

DATASET = "tiny_sft"
METACHARACTERS = ("; rm -rf x", "$(touch pwned)", "`touch pwned`", "| touch pwned", "&& touch pwned")


def make_workspace(root: Path, model_dir: Path) -> Path:
    """A workspace holding models/tiny (a copy of the tiny model) and data/ with one registered dataset."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_dir, root / "models" / "tiny")
    data = root / "data"
    data.mkdir()
    write_sft_data(data)
    (data / "dataset_info.json").write_text(json.dumps({DATASET: {"file_name": "sft.json"}}), encoding="utf-8")
    return root


def tiny_form(**changes: object) -> TrainForm:
    """A few-step LoRA run on the tiny model: a log record every step."""
    values = dict(
        model="models/tiny", dataset_dir="data", datasets=[DATASET], template="qwen", stage="sft", finetuning_type="lora",
        learning_rate=None, num_train_epochs=1.0, max_steps=4, batch_size=2, grad_accum=1, cutoff_len=64, max_samples=0,
        val_size=0.0, lora_rank=4, lora_target="all", logging_steps=1, save_steps=2, output_dir="outputs/run",
    )  # fmt: skip
    values.update(changes)
    return TrainForm(**values)


def wait_until_done(jobs: JobManager, job_id: str, timeout: float = 120) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = jobs.get(job_id)
        if record is not None and not record.running:
            return record
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still running after {timeout} s")

"""Shared pieces of the training tests: tiny datasets, a CLI runner, metrics readers, thread limits.

Training runs go through the real entry points (`glmtune.train.runner.main` in-process, or
`python -m glmtune train` as a subprocess) so the tests see what a user's command does.
"""

import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

# One compute thread: on a small shared CPU, OpenMP threads spin-waiting for a busy core make
# steps of a tiny model tens of times slower without changing any result these tests check.
THREADS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def write_sft_data(directory: Path, rows: int = 16) -> Path:
    """Alpaca rows of varied length, so batches need padding and length grouping matters."""
    data = [
        {"instruction": f"What is {i} + {i}?", "input": "Answer briefly." if i % 3 else "",
         "output": f"{i} + {i} = {2 * i}." * (1 + i % 4)}
        for i in range(rows)
    ]  # fmt: skip
    path = directory / "sft.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def write_pt_data(directory: Path) -> str:
    """A `{"text": ...}` JSONL file named in a dataset_info.json (ChatGLM Efficient Tuning's `columns.prompt`)."""
    lines = [{"text": f"The capital of France is Paris. 法国的首都是巴黎。 {i} * 7 = {7 * i}."} for i in range(24)]
    (directory / "corpus.jsonl").write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines), encoding="utf-8")
    info = {"corpus": {"file_name": "corpus.jsonl", "columns": {"prompt": "text"}}}
    (directory / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return "corpus"


def train_argv(model_dir: Path, dataset: Path | str, output_dir: Path, *extra: str, stage: str = "sft") -> list[str]:
    """A tiny run: a few steps, short samples, a log record every step, a checkpoint every other step."""
    return [
        "--stage", stage, "--model_name_or_path", str(model_dir), "--dataset", str(dataset), "--template", "qwen",
        "--output_dir", str(output_dir), "--max_steps", "4", "--cutoff_len", "64", "--per_device_train_batch_size", "2",
        "--logging_steps", "1", "--save_steps", "2", *extra,
    ]  # fmt: skip


def run_train(argv: Sequence[str]) -> Path:
    """Train in-process through `glmtune train`'s entry point; returns the output dir."""
    from glmtune.train.runner import main

    assert main(list(argv)) == 0
    return Path(argv[list(argv).index("--output_dir") + 1])


def subprocess_env(home: Path) -> dict[str, str]:
    return {**os.environ, **THREADS_ENV, "GLMTUNE_HOME": str(home), "HF_HUB_OFFLINE": "1"}


def cli_command(argv: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "glmtune", "train", *argv]


def read_metrics(output_dir: Path) -> list[dict[str, Any]]:
    path = output_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def step_losses(output_dir: Path) -> dict[int, float]:
    """Training loss per step; a step logged twice (a resumed run repeats steps) keeps its last record."""
    return {record["step"]: record["loss"] for record in read_metrics(output_dir) if "loss" in record}


def adapter_weights(directory: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(directory / "adapter_model.safetensors")


def base_logits(model_args: Any, input_ids: Any) -> Any:
    """Logits of a model loaded the way inference loads it (adapters attached or merged)."""
    import torch

    from glmtune.model.loader import load_model

    model = load_model(model_args)
    with torch.no_grad():
        return model(input_ids=input_ids).logits


@pytest.fixture
def train_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """GLMTUNE_HOME (preprocessing cache) inside the test dir, and one compute thread; yields the home."""
    import torch

    home = tmp_path / "home"
    monkeypatch.setenv("GLMTUNE_HOME", str(home))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield home
    torch.set_num_threads(threads)

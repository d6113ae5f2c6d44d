"""The memory estimate against a measured peak: a short LoRA run of the default model in its own process."""

import os
import re
import subprocess
import sys

import pytest
from train_helpers import THREADS_ENV

pytestmark = pytest.mark.slow
SUMMARY = re.compile(r"peak memory (\d+) MB \(estimate (\d+) MB\)")


def test_estimate_is_within_15_percent_of_the_measured_peak(tmp_path):
    """Its own process, so the peak RSS is the run's alone; the bundled identity data, a few steps."""
    argv = [
        sys.executable, "-m", "glmtune", "train", "--dataset", "identity", "--template", "smollm2",
        "--finetuning_type", "lora", "--cutoff_len", "256", "--max_steps", "2", "--save_steps", "1000",
        "--output_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    env = {**os.environ, **THREADS_ENV, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    measured, estimated = map(int, SUMMARY.search(result.stdout).groups())
    assert abs(estimated - measured) <= 0.15 * measured, (measured, estimated)

"""Exact resume: a run killed with SIGKILL and resumed from its newest complete checkpoint logs the
same per-step losses as an uninterrupted run; a half-written checkpoint is never used."""

import json
import logging
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from train_helpers import (
    adapter_weights,
    cli_command,
    read_metrics,
    run_train,
    step_losses,
    subprocess_env,
    train_argv,
    train_env,  # noqa: F401  (fixture)
    write_sft_data,
)

from glmtune.errors import ConfigError
from glmtune.paths import COMPLETE_MARKER, is_complete, mark_complete
from glmtune.train.checkpoints import newest_complete_checkpoint, resolve_resume
from glmtune.train.runner import main

STEPS = 24  # six epochs of 16 rows in batches of 2 x 2 accumulated: resuming crosses epoch boundaries
KILL_AFTER = 6  # kill once a complete checkpoint at this step or later exists
# Dropout on: equal losses then also need the RNG state restored, not only weights, optimizer and data position.
RESUME_FLAGS = ("--max_steps", str(STEPS), "--save_steps", "3", "--save_total_limit", "100",  # keep every save to check
                "--gradient_accumulation_steps", "2", "--lora_dropout", "0.1", "--seed", "7", "--data_seed", "7")  # fmt: skip


def kill_after_complete_checkpoint(process: subprocess.Popen, output_dir: Path, min_step: int) -> None:
    """Poll until a checkpoint of step >= min_step is complete, then SIGKILL the process at once."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        newest = newest_complete_checkpoint(output_dir)
        if newest is not None and checkpoint_step(newest) >= min_step:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait(timeout=60)


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def cut_short_save(complete: Path, later: Path) -> None:
    """Leave `later` as a save killed half-way: the files of a real checkpoint, one truncated, no marker.

    The kill itself lands wherever the process happens to be; this makes the worst case certain.
    """
    shutil.rmtree(later, ignore_errors=True)
    shutil.copytree(complete, later)
    (later / COMPLETE_MARKER).unlink()
    weights = later / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def test_resume_after_sigkill_repeats_the_uninterrupted_losses(
    tiny_llama_dir: Path, tmp_path: Path, train_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Run B is a `glmtune train` process killed mid-run; the uninterrupted run A and B's resume run in-process."""
    dataset = write_sft_data(tmp_path)
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    log = tmp_path / "run_b.log"  # a file, not a pipe: nobody reads while it runs, and a full pipe would block it
    with log.open("w") as handle:
        killed = subprocess.Popen(cli_command(train_argv(tiny_llama_dir, dataset, run_b, *RESUME_FLAGS)),
                                  env=subprocess_env(train_env), stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
        kill_after_complete_checkpoint(killed, run_b, KILL_AFTER)
    assert killed.returncode == -signal.SIGKILL, f"run B ended before it could be killed: {log.read_text()[-2000:]}"
    resumed_from = newest_complete_checkpoint(run_b)
    assert resumed_from is not None
    cut_short = run_b / f"checkpoint-{checkpoint_step(resumed_from) + 3}"
    cut_short_save(resumed_from, cut_short)
    records_before = len(read_metrics(run_b))

    run_train(train_argv(tiny_llama_dir, dataset, run_a, *RESUME_FLAGS))
    caplog.set_level(logging.INFO, logger="glmtune")
    run_train(train_argv(tiny_llama_dir, dataset, run_b, *RESUME_FLAGS, "--resume_from_checkpoint", "auto"))

    assert f"resuming from {resumed_from}" in caplog.text
    resumed_steps = [record["step"] for record in read_metrics(run_b)[records_before:] if "loss" in record]
    assert resumed_steps == list(range(checkpoint_step(resumed_from) + 1, STEPS + 1))
    assert is_complete(cut_short) and adapter_weights(cut_short)  # the resumed run saved it again, whole
    expected, actual = step_losses(run_a), step_losses(run_b)
    assert sorted(expected) == sorted(actual) == list(range(1, STEPS + 1))
    for step in expected:
        assert actual[step] == pytest.approx(expected[step], abs=1e-4), f"step {step}"


def test_auto_skips_checkpoints_without_the_complete_marker(tmp_path: Path) -> None:
    for step in (3, 6, 9):
        (tmp_path / f"checkpoint-{step}").mkdir()
    mark_complete(tmp_path / "checkpoint-3")
    mark_complete(tmp_path / "checkpoint-6")
    (tmp_path / "checkpoint-12").write_text("a file, not a checkpoint")
    (tmp_path / "checkpoint-final").mkdir()
    assert resolve_resume("auto", str(tmp_path)) == str(tmp_path / "checkpoint-6")
    (tmp_path / "checkpoint-6" / COMPLETE_MARKER).unlink()
    assert resolve_resume("auto", str(tmp_path)) == str(tmp_path / "checkpoint-3")
    (tmp_path / "checkpoint-3" / COMPLETE_MARKER).unlink()
    assert resolve_resume("auto", str(tmp_path)) is None  # nothing complete: start fresh
    assert resolve_resume(None, str(tmp_path)) is None


def test_explicit_resume_path_must_be_a_complete_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "checkpoint-9").mkdir()
    with pytest.raises(ConfigError, match="did not finish"):
        resolve_resume(str(tmp_path / "checkpoint-9"), str(tmp_path))
    with pytest.raises(ConfigError, match="no such directory"):
        resolve_resume(str(tmp_path / "checkpoint-12"), str(tmp_path))


@pytest.mark.usefixtures("train_env")
def test_half_written_resume_path_fails_the_command_before_training(tiny_llama_dir: Path, tmp_path: Path) -> None:
    half_written = tmp_path / "out" / "checkpoint-6"
    half_written.mkdir(parents=True)
    argv = train_argv(tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "out", "--resume_from_checkpoint", str(half_written))
    with pytest.raises(ConfigError, match=COMPLETE_MARKER):
        main(argv)
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


@pytest.mark.usefixtures("train_env")
@pytest.mark.parametrize("logging_steps", ["1", "2"])
def test_a_resumed_run_reports_the_loss_of_the_whole_run(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, logging_steps: str
) -> None:
    """The hostile pass: after a resume, "final loss" was the mean over the resumed steps only."""
    dataset = write_sft_data(tmp_path)
    flags = ("--max_steps", "6", "--save_steps", "2", "--save_total_limit", "100", "--logging_steps", logging_steps)
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    run_train(train_argv(tiny_llama_dir, dataset, run_a, *flags))
    uninterrupted = capsys.readouterr().out
    run_b.mkdir()
    shutil.copytree(run_a / "checkpoint-2", run_b / "checkpoint-2")  # a run stopped after its first save
    run_train(train_argv(tiny_llama_dir, dataset, run_b, *flags, "--resume_from_checkpoint", "auto"))
    resumed = capsys.readouterr().out
    expected = re.search(r"final loss ([\d.]+)", uninterrupted)
    actual = re.search(r"final loss ([\d.]+)", resumed)
    assert expected and actual
    assert float(actual.group(1)) == pytest.approx(float(expected.group(1)), abs=2e-4)
    results = [json.loads((run / "train_results.json").read_text())["train_loss"] for run in (run_a, run_b)]
    assert results[1] == pytest.approx(results[0], abs=2e-4)

"""Two processes learn what one does: `torchrun --nproc_per_node 2 -m glmtune train` on CPU (gloo).

Each test compares a 2-process run against an in-process run with the same global batch, with the
padding-free micro-batches on (a small token budget, so the two processes run different numbers of
micro-batches and only the last of each may synchronise gradients). Only the first process writes
metrics and prints the summary, and token counts are summed over both.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_train_dpo import dpo_argv
from test_train_ppo import ppo_argv
from test_train_resume import checkpoint_step, kill_after_complete_checkpoint
from test_train_rm import write_pairs
from train_helpers import (
    read_metrics,
    run_train,
    step_losses,
    subprocess_env,
    train_argv,
    train_env,  # noqa: F401  (fixture)
    write_sft_data,
)

from glmtune.train.checkpoints import newest_complete_checkpoint

pytestmark = pytest.mark.distributed

# Most rows of the tiny dataset are longer than 32 tokens: every batch runs as several micro-batches.
MICRO_BATCHES = ("--micro_batch_tokens", "32")
# Global batch 4 per step: one process runs 2 rows x 2 accumulated, two processes 1 row x 2 accumulated each.
ONE_PROCESS = ("--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2")
TWO_PROCESSES = ("--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "2")


def torchrun_command(argv: list[str]) -> list[str]:
    """`torchrun --standalone`: a free rendezvous port, so parallel test runs cannot collide."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "glmtune", "train", *argv]  # fmt: skip


def run_two_processes(argv: list[str], home: Path) -> str:
    """Both processes' output, stdout and log lines; a hang (mismatched gradient syncs) fails at the timeout."""
    result = subprocess.run(torchrun_command(argv), env=subprocess_env(home), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout + result.stderr


def assert_same_losses(expected: dict[int, float], actual: dict[int, float]) -> None:
    assert sorted(actual) == sorted(expected)
    for step in expected:
        assert actual[step] == pytest.approx(expected[step], abs=1e-4), f"step {step}"


def tokens_seen(output_dir: Path) -> int:
    return json.loads((output_dir / "train_results.json").read_text())["num_input_tokens_seen"]


def test_two_processes_match_one_and_only_the_first_reports(tiny_llama_dir: Path, tmp_path: Path, train_env: Path) -> None:
    dataset = write_sft_data(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    run_train(train_argv(tiny_llama_dir, dataset, one, *ONE_PROCESS, *MICRO_BATCHES, "--plot_loss"))
    output = run_two_processes(train_argv(tiny_llama_dir, dataset, two, *TWO_PROCESSES, *MICRO_BATCHES, "--plot_loss"), train_env)

    assert_same_losses(step_losses(one), step_losses(two))
    logged_steps = [record["step"] for record in read_metrics(two) if "loss" in record]
    assert logged_steps == [1, 2, 3, 4]  # one writer: each step once
    assert output.count("train summary:") == output.count("trainable parameters:") == 1
    assert tokens_seen(two) == tokens_seen(one)  # both processes' tokens, not one's
    summary = json.loads((two / "train_results.json").read_text())
    assert summary["effective_tokens"] == tokens_seen(one)
    assert (two / "training_loss.png").is_file()


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_losses(
    tiny_llama_dir: Path, tmp_path: Path, train_env: Path
) -> None:
    """SIGKILL to every process of the torchrun job once a checkpoint is complete, then the same command again."""
    dataset = write_sft_data(tmp_path)
    flags = ("--max_steps", "16", "--save_steps", "3", "--save_total_limit", "100", "--seed", "7", "--data_seed", "7")
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    run_train(train_argv(tiny_llama_dir, dataset, uninterrupted, *ONE_PROCESS, *MICRO_BATCHES, *flags))
    argv = train_argv(tiny_llama_dir, dataset, killed, *TWO_PROCESSES, *MICRO_BATCHES, *flags, "--resume_from_checkpoint", "auto")
    log = tmp_path / "killed.log"
    with log.open("w") as handle:
        job = subprocess.Popen(torchrun_command(argv), env=subprocess_env(train_env), stdout=handle,
                               stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        kill_group = KillGroupOnPoll(job)
        kill_after_complete_checkpoint(kill_group, killed, min_step=3)
    assert job.returncode != 0, f"the job ended before it could be killed: {log.read_text()[-2000:]}"
    resumed_from = newest_complete_checkpoint(killed)
    assert resumed_from is not None and checkpoint_step(resumed_from) < 16
    assert all((resumed_from / f"rng_state_{rank}.pth").is_file() for rank in (0, 1))

    assert run_two_processes(argv, train_env).count("train summary:") == 1
    assert_same_losses(step_losses(uninterrupted), step_losses(killed))
    assert tokens_seen(killed) == tokens_seen(uninterrupted)


class KillGroupOnPoll:
    """The torchrun job seen as one process whose SIGKILL reaches the agent and both workers at once,
    as a node failure would; leaving workers orphaned would let them finish the run."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    def poll(self) -> int | None:
        return self.process.poll()

    def send_signal(self, number: int) -> None:
        os.killpg(self.process.pid, number)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)


def test_two_processes_train_dpo_on_packed_pairs(tiny_llama_dir: Path, tmp_path: Path, train_env: Path) -> None:
    """Packed pairs under a token budget that one process's batch of two pairs fits and the other's does not: each
    runs its pairs whole, since DPOTrainer gathers metrics from both processes in every loss call (one split batch
    made the processes' gathers disagree, and the run failed)."""
    data = write_pairs(tmp_path)
    rows = json.loads((data / "pairs.json").read_text(encoding="utf-8"))
    for row in rows[1::2]:  # every other chosen answer is long: two long pairs are over 150 packed tokens
        row["chosen"] += " That is the sum." * 6
    (data / "pairs.json").write_text(json.dumps(rows), encoding="utf-8")
    two = tmp_path / "two"
    argv = dpo_argv(tiny_llama_dir, data, two, "--per_device_train_batch_size", "2", "--micro_batch_tokens", "150")
    run_two_processes(argv, train_env)
    records = [record for record in read_metrics(two) if "rewards/margins" in record]
    assert [record["step"] for record in records] == [1, 2, 3, 4]  # one writer: each step once
    assert records[-1]["loss"] < records[0]["loss"] and records[-1]["rewards/margins"] > 0


def test_two_processes_train_ppo_with_its_value_head(
    tiny_llama_dir: Path, tmp_path: Path, train_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The value head runs outside the model's wrapped forward: two processes train it (it used to fail, first on
    the wrapper's missing attributes, then on DDP's "mark a variable ready only once")."""
    from safetensors.torch import load_file

    (tmp_path / "first_token_reward.py").write_text(
        "def even(completion_ids, **kwargs):\n    return [1.0 if ids and ids[0] % 2 == 0 else -1.0 for ids in completion_ids]\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the processes import the reward function from there
    out = tmp_path / "ppo"
    run_two_processes(ppo_argv(tiny_llama_dir, out, "--reward_funcs", "first_token_reward:even", "--warmup_steps", "0"), train_env)
    records = [record for record in read_metrics(out) if "value_loss" in record]
    assert [record["step"] for record in records] == [1, 2, 3, 4]  # one writer: each step once
    value_head = load_file(out / "value_head.safetensors")
    assert any(float(weight.abs().sum()) > 0 for weight in value_head.values())  # it learned from zero

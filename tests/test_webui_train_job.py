"""The Train tab's logic: settings from the form, the command-line equivalent, injection-proof jobs,
and Stop on a running tiny job leaving a complete checkpoint."""

import shlex
import time
from pathlib import Path

import pytest
import yaml
from test_webui_support import (
    DATASET,
    METACHARACTERS,
    make_workspace,
    tiny_form,
    wait_until_done,
)
from train_helpers import THREADS_ENV

from glmtune.errors import ConfigError
from glmtune.hparams.entry import get_train_args
from glmtune.paths import is_complete
from glmtune.train.checkpoints import newest_complete_checkpoint
from glmtune.train.dataset_defaults import train_args_with_dataset_defaults
from glmtune.webui.jobs import FINISHED, STOPPED, JobManager
from glmtune.webui.train_job import (
    command_line,
    form_from_page,
    preview_rows,
    stage_fields,
    start_training,
    train_settings,
)
from glmtune.webui.workspace import OutsideWorkspaceError, Workspace


@pytest.fixture
def workspace(tmp_path, tiny_llama_dir, monkeypatch):
    monkeypatch.setenv("GLMTUNE_HOME", str(tmp_path / "home"))
    for name, value in THREADS_ENV.items():
        monkeypatch.setenv(name, value)  # jobs inherit the server's environment
    return Workspace.at(make_workspace(tmp_path / "ws", tiny_llama_dir))


def test_settings_resolve_paths_and_the_command_line_parses_back(workspace):
    settings = train_settings(workspace, tiny_form())
    assert settings["model_name_or_path"] == str(workspace.root / "models" / "tiny")
    assert settings["output_dir"] == str(workspace.root / "outputs" / "run")
    assert settings["dataset"] == DATASET and "learning_rate" not in command_line(settings)
    line = command_line(settings)
    assert line.startswith("glmtune train --stage sft --finetuning_type lora ")
    _, data_args, training_args, finetuning_args, _ = get_train_args(shlex.split(line)[2:]).all()
    assert (data_args.dataset, training_args.max_steps, finetuning_args.lora_rank) == (DATASET, 4, 4)


def test_a_stages_own_fields_reach_its_command_and_only_its_own(workspace):
    """The page sends every stage's own fields; the chosen stage's become settings, checked as the CLI checks them."""
    fixed = list(vars(tiny_form()).values())[:-1]  # TrainForm's fields without stage_settings
    page_values = {("dpo", "pref_beta"): 0.3, ("dpo", "pref_loss"): "ipo", ("dpo", "pref_ftx"): 0.0}
    extra = [page_values.get((stage, setting.name), setting.default) for stage, setting in stage_fields()]
    stage_index = list(vars(tiny_form())).index("stage")
    fixed[stage_index] = "dpo"
    line = command_line(train_settings(workspace, form_from_page([*fixed, *extra], len(fixed))))
    assert "--stage dpo" in line and "--pref_beta 0.3" in line and "--pref_loss ipo" in line
    args = get_train_args(shlex.split(line)[2:])
    assert (args.stage_settings[0].pref_beta, args.stage_settings[0].pref_loss) == (0.3, "ipo")
    fixed[stage_index] = "sft"
    assert "pref_" not in command_line(train_settings(workspace, form_from_page([*fixed, *extra], len(fixed))))


@pytest.mark.parametrize("field", ["model", "dataset_dir", "output_dir"])
@pytest.mark.parametrize("text", ["../x", "/tmp", "data/../../x"])
def test_path_fields_refuse_paths_outside_the_workspace(workspace, field, text):
    with pytest.raises(OutsideWorkspaceError):
        train_settings(workspace, tiny_form(**{field: text}))


@pytest.mark.parametrize("text", ["../x", "/tmp", "outputs/../../x"])
def test_a_reward_model_outside_the_workspace_is_refused(workspace, text):
    with pytest.raises(OutsideWorkspaceError):
        train_settings(workspace, tiny_form(stage="ppo", stage_settings={"reward_model": text}))


def test_a_reward_model_inside_the_workspace_resolves_and_code_imports_are_refused(workspace):
    (workspace.root / "outputs" / "rm").mkdir(parents=True)
    settings = train_settings(workspace, tiny_form(stage="ppo", stage_settings={"reward_model": "outputs/rm"}))
    assert settings["reward_model"] == str(workspace.root / "outputs" / "rm")
    assert train_settings(workspace, tiny_form(stage="grpo", stage_settings={"reward_funcs": "math_exact,format"}))
    with pytest.raises(ConfigError, match="bundled functions only"):
        train_settings(workspace, tiny_form(stage="grpo", stage_settings={"reward_funcs": "os:system"}))


def test_a_symlinked_model_pointing_outside_is_refused(workspace, tiny_llama_dir):
    (workspace.root / "models" / "escape").symlink_to(tiny_llama_dir)
    with pytest.raises(OutsideWorkspaceError):
        train_settings(workspace, tiny_form(model="models/escape"))


@pytest.mark.parametrize("text", METACHARACTERS)
def test_shell_syntax_in_model_or_data_fields_is_just_a_missing_path(workspace, text):
    for field in ("model", "dataset_dir"):
        with pytest.raises(ConfigError, match="does not exist"):
            train_settings(workspace, tiny_form(**{field: text}))
    with pytest.raises(ConfigError, match="unknown dataset"):
        train_settings(workspace, tiny_form(datasets=[text]))
    assert not list(workspace.root.rglob("pwned")) and not (Path.cwd() / "pwned").exists()


def test_invalid_settings_fail_before_any_job_starts(workspace):
    jobs = JobManager(workspace.root)
    with pytest.raises(ConfigError, match="lora_rank"):
        start_training(workspace, jobs, tiny_form(lora_rank=0))
    with pytest.raises(ConfigError, match="choose at least one dataset"):
        start_training(workspace, jobs, tiny_form(datasets=[]))
    assert jobs.list() == []


def test_shell_syntax_reaches_the_job_as_literal_text(workspace):
    """Output folders and LoRA targets with shell syntax are passed on verbatim: no shell ever sees them."""
    jobs = JobManager(workspace.root)
    for index, text in enumerate(METACHARACTERS):
        record = start_training(workspace, jobs, tiny_form(output_dir=f"outputs/{index} {text}", lora_target=text))
        config = Path(record.argv[-1])
        assert record.argv[-4:-1] == ["glmtune.webui.contained_job", str(workspace.root), "train"] and config.parent.name == f"{index} {text}"
        assert yaml.safe_load(config.read_text())["lora_target"] == text
        jobs.stop(record.id)  # what the job would do is not the point: it got the text as one argument
        wait_until_done(jobs, record.id)
    assert not list(workspace.root.rglob("pwned")) and not (Path.cwd() / "pwned").exists()
    assert (workspace.root / "models").is_dir() and (workspace.root / "data").is_dir()


def test_a_short_job_finishes_with_metrics_and_a_plot(workspace):
    jobs = JobManager(workspace.root)
    record = wait_until_done(jobs, start_training(workspace, jobs, tiny_form()).id)
    output = Path(record.output_dir)
    assert record.status == FINISHED, (output / "webui_job.log").read_text()[-3000:]
    assert (output / "metrics.jsonl").is_file() and (output / "training_loss.png").is_file()
    assert yaml.safe_load((output / "train_config.yaml").read_text())["output_dir"] == str(output)


def test_stop_saves_a_complete_checkpoint_and_ends_the_job_cleanly(workspace):
    jobs = JobManager(workspace.root)
    record = start_training(workspace, jobs, tiny_form(max_steps=2000, save_steps=100_000, output_dir="outputs/long"))
    metrics = Path(record.output_dir) / "metrics.jsonl"
    deadline = time.monotonic() + 90
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        assert time.monotonic() < deadline and jobs.get(record.id).running, Path(record.log_file).read_text()[-3000:]
        time.sleep(0.2)
    jobs.stop(record.id)
    done = wait_until_done(jobs, record.id, timeout=60)
    assert (done.status, done.returncode) == (STOPPED, 0), Path(record.log_file).read_text()[-3000:]
    checkpoint = newest_complete_checkpoint(Path(record.output_dir))
    assert checkpoint is not None and is_complete(checkpoint)
    assert 2 <= int(checkpoint.name.split("-")[1]) < 2000  # saved at the step it was stopped on, not by save_steps
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert (Path(record.output_dir) / "adapter_model.safetensors").is_file()  # the run ended through the normal save


def test_preview_shows_rendered_rows(workspace):
    text = preview_rows(workspace, tiny_form())
    assert "sample 1" in text and "What is 0 + 0?" in text and "⟦" in text


def test_zero_rate_and_batch_leave_them_to_the_method_or_dataset(workspace):
    """The bundled identity set asks for its own LoRA rate and batch; a form left at 0 lets it."""
    line = command_line(train_settings(workspace, tiny_form(batch_size=0, dataset_dir="", datasets=["identity"])))
    assert "per_device_train_batch_size" not in line and "learning_rate" not in line
    asked = train_args_with_dataset_defaults(shlex.split(line)[2:]).training
    assert (asked.per_device_train_batch_size, asked.learning_rate) == (8, 0.002)

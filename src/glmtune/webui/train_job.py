"""Train tab logic: the page's fields become `glmtune train` settings, checked, saved and launched."""

import dataclasses
import io
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmtune.errors import ConfigError
from glmtune.stages import STAGES
from glmtune.webui.forms import (
    chosen_datasets,
    dataset_dir_setting,
    model_setting,
    output_setting,
    settings_argv,
)
from glmtune.webui.jobs import JobManager, JobRecord, glmtune_command
from glmtune.webui.workspace import Workspace

PREVIEW_ROWS = 3


@dataclass
class TrainForm:
    """The Train tab's fields, as the page sends them."""

    model: str
    dataset_dir: str
    datasets: list[str]
    template: str
    stage: str
    finetuning_type: str
    learning_rate: float | None
    num_train_epochs: float
    max_steps: int
    batch_size: int
    grad_accum: int
    cutoff_len: int
    max_samples: int
    val_size: float
    lora_rank: int
    lora_target: str
    logging_steps: int
    save_steps: int
    output_dir: str
    stage_settings: dict[str, Any] = field(default_factory=dict)  # the stage's own settings (Stage.settings)


def stage_fields() -> list[tuple[str, dataclasses.Field]]:
    """(stage, setting) for every setting a stage of the registry reads besides the common ones, in registry order."""
    return [
        (name, setting)
        for name, stage in STAGES.items()
        for cls in stage.settings_classes()
        for setting in dataclasses.fields(cls)
    ]


def form_from_page(values: Sequence[Any], fixed: int) -> TrainForm:
    """The page sends TrainForm's fields, then every stage's own fields (in stage_fields order): the chosen stage's
    are kept, the others' hidden fields are not."""
    form = TrainForm(*values[:fixed])
    chosen = {setting.name: value for (stage, setting), value in zip(stage_fields(), values[fixed:]) if stage == form.stage}
    return dataclasses.replace(form, stage_settings=chosen)


def train_settings(workspace: Workspace, form: TrainForm) -> dict[str, Any]:
    """Settings in `glmtune train`'s names, paths resolved inside the workspace; None leaves glmtune's default."""
    settings: dict[str, Any] = {
        "stage": form.stage,
        "finetuning_type": form.finetuning_type,
        "model_name_or_path": model_setting(workspace, form.model),
        "dataset_dir": dataset_dir_setting(workspace, form.dataset_dir),
        "dataset": chosen_datasets(workspace, form.dataset_dir, form.datasets),
        "template": form.template,
        "output_dir": str(output_setting(workspace, form.output_dir)),
        "learning_rate": form.learning_rate or None,
        "num_train_epochs": form.num_train_epochs,
        "max_steps": int(form.max_steps),
        "per_device_train_batch_size": int(form.batch_size) or None,
        "gradient_accumulation_steps": int(form.grad_accum),
        "cutoff_len": int(form.cutoff_len),
        "max_samples": int(form.max_samples) or None,
        "val_size": form.val_size or None,
        "logging_steps": int(form.logging_steps),
        "save_steps": int(form.save_steps),
        "plot_loss": True,
    }
    if form.finetuning_type == "lora":
        settings.update(lora_rank=int(form.lora_rank), lora_target=form.lora_target.strip() or None)
    settings.update({name: stage_setting(workspace, form.stage, name, value) for name, value in form.stage_settings.items()})
    return settings


def stage_setting(workspace: Workspace, stage: str, name: str, value: Any) -> Any:
    """A stage's own setting as the page may give it: paths (a settings class's PATH_SETTINGS) resolved inside the
    workspace; names that could import code (IMPORTING_SETTINGS: module:function) limited to glmtune's bundled ones."""
    classes = STAGES[stage].settings_classes()
    given = isinstance(value, str) and value.strip()
    if given and any(name in getattr(cls, "PATH_SETTINGS", ()) for cls in classes):
        return str(workspace.path(value, name, must_exist=True))
    if given and ":" in value and any(name in getattr(cls, "IMPORTING_SETTINGS", ()) for cls in classes):
        raise ConfigError(f"{name}: the web UI runs bundled functions only; use module:function from the command line")
    return value


def command_line(settings: dict[str, Any]) -> str:
    """What to type in a terminal for the same run, quoted for a POSIX shell."""
    return shlex.join(["glmtune", "train", *settings_argv(settings)])


def start_training(workspace: Workspace, jobs: JobManager, form: TrainForm) -> JobRecord:
    """Validate exactly as `glmtune train` will, save the resolved YAML, then run `glmtune train CONFIG`."""
    from glmtune.hparams.entry import get_train_args, write_train_config

    settings = train_settings(workspace, form)
    config = write_train_config(get_train_args(settings_argv(settings)))
    return jobs.start("train", glmtune_command(workspace.root, "train", str(config)), Path(settings["output_dir"]))


def preview_rows(workspace: Workspace, form: TrainForm) -> str:
    """A few rows rendered by the template and tokenized, as `glmtune data inspect` shows them."""
    from glmtune.data.inspect import inspect_dataset

    settings = {
        "model_name_or_path": model_setting(workspace, form.model),
        "dataset_dir": dataset_dir_setting(workspace, form.dataset_dir),
        "template": form.template,
        "stage": form.stage,
        "max_samples": PREVIEW_ROWS,
        "num_samples": PREVIEW_ROWS,
        "cutoff_len": int(form.cutoff_len),
    }
    output = io.StringIO()
    names = chosen_datasets(workspace, form.dataset_dir, form.datasets)
    inspect_dataset(names, settings_argv(settings), output, color=False)
    return output.getvalue()

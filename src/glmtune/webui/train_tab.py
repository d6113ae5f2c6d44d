"""The Train tab: choose model, data and method, start and stop a run, and watch its log and loss."""

import dataclasses
import itertools
from pathlib import Path

import gradio as gr
import pandas as pd

from glmtune.errors import ConfigError
from glmtune.hparams.entry import TRAINING_DEFAULTS
from glmtune.methods import method_names
from glmtune.stages import stage_names
from glmtune.webui.context import POLL_SECONDS, Context, fresh_folder
from glmtune.webui.forms import dataset_names
from glmtune.webui.i18n import LANGUAGES, text
from glmtune.webui.job_view import job_selector_update, job_state
from glmtune.webui.progress import loss_frame
from glmtune.webui.train_job import (
    command_line,
    form_from_page,
    preview_rows,
    stage_fields,
    start_training,
    train_settings,
)
from glmtune.webui.ui_errors import shown_in_page


def plot_value(output_dir: Path) -> pd.DataFrame | None:
    """The loss frame, or None before the first record: Gradio 6 draws no lines into a plot first given an empty frame."""
    frame = loss_frame(output_dir)
    return None if frame.empty else frame


def setting_component(setting: dataclasses.Field) -> gr.components.Component:
    """A field for one of a stage's own settings, of the kind its type and choices call for."""
    options = {"label": setting.name, "info": setting.metadata.get("help"), "value": setting.default}
    if setting.metadata.get("choices"):
        return gr.Dropdown(choices=list(setting.metadata["choices"]), **options)
    if setting.type in (float, int, "float", "int"):
        return gr.Number(**options)
    if setting.type in (bool, "bool"):
        return gr.Checkbox(**options)
    return gr.Textbox(**options)


def stage_setting_rows(shown: str) -> tuple[dict[str, gr.Row], list[gr.components.Component]]:
    """A row of fields for each stage that reads settings of its own, visible while that stage is chosen."""
    rows: dict[str, gr.Row] = {}
    components = []
    for stage, fields in itertools.groupby(stage_fields(), key=lambda pair: pair[0]):
        with gr.Row(visible=stage == shown) as rows[stage]:
            components += [setting_component(setting) for _, setting in fields]
    return rows, components


def build_train_tab(context: Context, demo: gr.Blocks) -> None:
    workspace, jobs = context.workspace, context.jobs
    with gr.Row():
        model = context.textbox("model", placeholder="models/my-model", scale=3)
        template = context.template_dropdown()
        stage = context.dropdown("stage", choices=list(stage_names()), value="sft")
        finetuning_type = context.dropdown("finetuning_type", choices=list(method_names()), value="lora")
    stage_rows, stage_inputs = stage_setting_rows("sft")
    with gr.Row():
        dataset_dir = context.textbox("dataset_dir", placeholder="data", scale=2)
        datasets = context.dropdown("datasets", choices=dataset_names(workspace, ""), multiselect=True, scale=3)
        refresh = context.button("refresh_datasets", size="sm", scale=0)
        preview = context.button("preview", size="sm", scale=0)
    preview_box = context.textbox("preview_box", lines=3, max_lines=20, interactive=False)
    with gr.Row():
        learning_rate = context.number("learning_rate", value=0, minimum=0)
        epochs = context.number("num_train_epochs", value=TRAINING_DEFAULTS["num_train_epochs"], minimum=0)
        max_steps = context.number("max_steps", value=-1, precision=0)
        batch_size = context.number("batch_size", value=0, precision=0, minimum=0)
        grad_accum = context.number("grad_accum", value=1, precision=0, minimum=1)
    with gr.Row():
        cutoff_len = context.number("cutoff_len", value=1024, precision=0, minimum=1)
        max_samples = context.number("max_samples", value=0, precision=0, minimum=0)
        val_size = context.number("val_size", value=0, minimum=0)
        lora_rank = context.number("lora_rank", value=8, precision=0, minimum=1)
        lora_target = context.textbox("lora_target", value="all")
    with gr.Row():
        logging_steps = context.number("logging_steps", value=TRAINING_DEFAULTS["logging_steps"], precision=0, minimum=1)
        save_steps = context.number("save_steps", value=TRAINING_DEFAULTS["save_steps"], precision=0, minimum=1)
        output_dir = context.textbox("output_dir", value=lambda: fresh_folder("train"), scale=2)
    command = context.textbox("command", interactive=False, buttons=["copy"], elem_id="train-command")
    with gr.Row():
        start = context.button("start", variant="primary", elem_id="train-start")
        stop = context.button("stop", variant="stop", elem_id="train-stop")
    with gr.Row():
        job = context.dropdown("job", choices=[], scale=3, elem_id="train-job")
        status = gr.Markdown(elem_id="train-status")
    with gr.Row():
        log = context.textbox("log", lines=14, max_lines=14, autoscroll=True, interactive=False, elem_id="train-log")
        loss = context.labels.add(
            gr.LinePlot(None, x="step", y="loss", color="series", label=text("loss_plot", LANGUAGES[0]), elem_id="train-loss"),
            "loss_plot",
        )

    form_inputs = [
        model, dataset_dir, datasets, template, stage, finetuning_type, learning_rate, epochs, max_steps, batch_size,
        grad_accum, cutoff_len, max_samples, val_size, lora_rank, lora_target, logging_steps, save_steps, output_dir,
    ]  # fmt: skip; order of TrainForm's fields

    fixed = len(form_inputs)
    form_inputs = [*form_inputs, *stage_inputs]

    def show_command(*values: object) -> str:
        try:
            return command_line(train_settings(workspace, form_from_page(values, fixed)))
        except ConfigError as error:
            return f"⚠ {error}"

    @shown_in_page
    def refresh_datasets(folder: str) -> dict:
        return gr.update(choices=dataset_names(workspace, folder), value=[])

    @shown_in_page
    def show_preview(*values: object) -> str:
        return preview_rows(workspace, form_from_page(values, fixed))

    @shown_in_page
    def start_job(*values: object) -> dict:
        record = start_training(workspace, jobs, form_from_page(values, fixed))
        gr.Info(f"started {record.id}")
        return job_selector_update(jobs, "train", record.id)

    @shown_in_page
    def stop_job(job_id: str | None) -> None:
        if not job_id:
            raise ConfigError("choose a job to stop")
        jobs.stop(job_id)
        gr.Info(f"stopping {job_id}: it saves a checkpoint after the current step")

    def poll(job_id: str | None) -> tuple:
        record, status_text, log_text = job_state(jobs, job_id)
        return status_text, log_text, plot_value(Path(record.output_dir)) if record else None

    for component in form_inputs:
        component.change(show_command, form_inputs, command, show_progress="hidden")
    stage.change(lambda chosen: [gr.update(visible=name == chosen) for name in stage_rows], stage, list(stage_rows.values()))
    dataset_dir.submit(refresh_datasets, dataset_dir, datasets)
    refresh.click(refresh_datasets, dataset_dir, datasets)
    preview.click(show_preview, form_inputs, preview_box)
    start.click(start_job, form_inputs, job)
    stop.click(stop_job, job, None)
    job.change(poll, job, [status, log, loss], show_progress="hidden")
    gr.Timer(POLL_SECONDS).tick(poll, job, [status, log, loss], show_progress="hidden")
    demo.load(lambda: job_selector_update(jobs, "train"), None, job)

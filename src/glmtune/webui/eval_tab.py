"""The Evaluate tab: run `glmtune eval` on a checkpoint, then show its metrics and a few predictions."""

from pathlib import Path

import gradio as gr

from glmtune.errors import ConfigError
from glmtune.webui.context import POLL_SECONDS, Context, fresh_folder
from glmtune.webui.eval_job import (
    PREDICTION_COLUMNS,
    EvalForm,
    read_metrics,
    read_predictions,
    start_eval,
)
from glmtune.webui.forms import dataset_names
from glmtune.webui.i18n import LANGUAGES, text
from glmtune.webui.job_view import job_selector_update, job_state
from glmtune.webui.ui_errors import shown_in_page

METRIC_HEADERS = ["metric", "value"]


def build_eval_tab(context: Context, demo: gr.Blocks) -> None:
    workspace, jobs = context.workspace, context.jobs
    with gr.Row():
        model = context.textbox("model", placeholder="models/my-model", scale=2)
        adapter = context.textbox("adapter", placeholder="outputs/train-.../checkpoint-100", scale=2)
        template = context.template_dropdown()
    with gr.Row():
        dataset_dir = context.textbox("dataset_dir", placeholder="data", scale=2)
        dataset = context.dropdown("dataset", choices=dataset_names(workspace, ""), scale=2)
        refresh = context.button("refresh_datasets", size="sm", scale=0)
    with gr.Row():
        max_samples = context.number("eval_max_samples", value=20, precision=0, minimum=1)
        output_dir = context.textbox("eval_output_dir", value=lambda: fresh_folder("eval"), scale=2)
        run = context.button("run_eval", variant="primary", elem_id="eval-run")
    with gr.Row():
        job = context.dropdown("job", choices=[], scale=3, elem_id="eval-job")
        status = gr.Markdown(elem_id="eval-status")
    metrics = context.labels.add(
        gr.Dataframe(headers=METRIC_HEADERS, label=text("metrics", LANGUAGES[0]), interactive=False, elem_id="eval-metrics"),
        "metrics",
    )
    predictions = context.labels.add(
        gr.Dataframe(
            headers=list(PREDICTION_COLUMNS), label=text("predictions", LANGUAGES[0]), interactive=False, wrap=True,
            elem_id="eval-predictions",
        ),
        "predictions",
    )  # fmt: skip
    with gr.Accordion("log", open=False):
        log = context.textbox("log", lines=12, max_lines=12, interactive=False)

    @shown_in_page
    def refresh_datasets(folder: str) -> dict:
        return gr.update(choices=dataset_names(workspace, folder), value=None)

    @shown_in_page
    def run_eval(*values: object) -> dict:
        record = start_eval(workspace, jobs, EvalForm(*values))
        gr.Info(f"started {record.id}")
        return job_selector_update(jobs, "eval", record.id)

    def poll(job_id: str | None) -> tuple:
        record, status_text, log_text = job_state(jobs, job_id)
        if record is None:
            return status_text, log_text, [], []
        try:
            results = read_metrics(Path(record.output_dir)), read_predictions(Path(record.output_dir))
        except ConfigError as error:
            return f"{status_text} · ⚠ {error}", log_text, [], []
        return status_text, log_text, *results

    form_inputs = [model, adapter, dataset_dir, dataset, template, max_samples, output_dir]  # order of EvalForm's fields
    dataset_dir.submit(refresh_datasets, dataset_dir, dataset)
    refresh.click(refresh_datasets, dataset_dir, dataset)
    run.click(run_eval, form_inputs, job)
    outputs = [status, log, metrics, predictions]
    job.change(poll, job, outputs, show_progress="hidden")
    gr.Timer(POLL_SECONDS).tick(poll, job, outputs, show_progress="hidden")
    demo.load(lambda: job_selector_update(jobs, "eval"), None, job)

"""The Export tab: merge an adapter into its base model and write a standalone model folder."""

import gradio as gr

from glmtune.webui.context import POLL_SECONDS, Context
from glmtune.webui.export_job import ExportForm, start_export
from glmtune.webui.i18n import LANGUAGES, text
from glmtune.webui.job_view import job_selector_update, job_state
from glmtune.webui.ui_errors import shown_in_page


def build_export_tab(context: Context, demo: gr.Blocks) -> None:
    workspace, jobs = context.workspace, context.jobs
    with gr.Row():
        model = context.textbox("model", placeholder="models/my-model", scale=2)
        adapter = context.textbox("adapter", placeholder="outputs/train-...", scale=2)
    with gr.Row():
        export_dir = context.textbox("export_dir", placeholder="exports/my-merged-model", scale=3)
        overwrite = context.labels.add(gr.Checkbox(label=text("export_overwrite", LANGUAGES[0]), value=False), "export_overwrite")
        run = context.button("run_export", variant="primary", elem_id="export-run")
    with gr.Row():
        job = context.dropdown("job", choices=[], scale=3, elem_id="export-job")
        status = gr.Markdown(elem_id="export-status")
    log = context.textbox("log", lines=10, max_lines=10, interactive=False)

    @shown_in_page
    def run_export(*values: object) -> dict:
        record = start_export(workspace, jobs, ExportForm(*values))
        gr.Info(f"started {record.id}")
        return job_selector_update(jobs, "export", record.id)

    def poll(job_id: str | None) -> tuple[str, str]:
        _, status_text, log_text = job_state(jobs, job_id)
        return status_text, log_text

    run.click(run_export, [model, adapter, export_dir, overwrite], job)  # order of ExportForm's fields
    job.change(poll, job, [status, log], show_progress="hidden")
    gr.Timer(POLL_SECONDS).tick(poll, job, [status, log], show_progress="hidden")
    demo.load(lambda: job_selector_update(jobs, "export"), None, job)

"""The Gradio page: four tabs over one workspace, a language switch and the jobs table."""

import gradio as gr

from glmtune.webui.chat_tab import build_chat_tab
from glmtune.webui.context import POLL_SECONDS, Context
from glmtune.webui.eval_tab import build_eval_tab
from glmtune.webui.export_tab import build_export_tab
from glmtune.webui.i18n import LANGUAGES, text
from glmtune.webui.job_view import JOB_TABLE_HEADERS, jobs_table
from glmtune.webui.train_tab import build_train_tab
from glmtune.webui.workspace import Workspace


def build_app(workspace: Workspace) -> gr.Blocks:
    context = Context.create(workspace)
    labels = context.labels
    with gr.Blocks(title="glmtune", analytics_enabled=False) as demo:
        with gr.Row():
            labels.add(gr.Markdown(text("title", LANGUAGES[0])), "title", attribute="value")
            language = labels.add(
                gr.Radio(list(LANGUAGES), value=LANGUAGES[0], label=text("language", LANGUAGES[0]), elem_id="language"), "language"
            )
        gr.Markdown(f"`{workspace.root}`", elem_id="workspace")
        with gr.Tabs():
            with labels.add(gr.Tab(text("tab_train", LANGUAGES[0]), id="train"), "tab_train"):
                build_train_tab(context, demo)
            with labels.add(gr.Tab(text("tab_eval", LANGUAGES[0]), id="eval"), "tab_eval"):
                build_eval_tab(context, demo)
            with labels.add(gr.Tab(text("tab_chat", LANGUAGES[0]), id="chat"), "tab_chat"):
                build_chat_tab(context)
            with labels.add(gr.Tab(text("tab_export", LANGUAGES[0]), id="export"), "tab_export"):
                build_export_tab(context, demo)
        table = labels.add(
            gr.Dataframe(headers=JOB_TABLE_HEADERS, label=text("jobs", LANGUAGES[0]), interactive=False, elem_id="jobs"), "jobs"
        )
        language.change(labels.updates, language, labels.components)
        demo.load(lambda: jobs_table(context.jobs), None, table)
        gr.Timer(POLL_SECONDS * 2).tick(lambda: jobs_table(context.jobs), None, table, show_progress="hidden")
    return demo

"""`glmtune webui`: build the Gradio page and serve it, on 127.0.0.1 unless told otherwise."""

import argparse
import ipaddress
import logging
from collections.abc import Sequence

import gradio as gr

from glmtune.errors import ConfigError
from glmtune.webui.chat_tab import build_chat_tab
from glmtune.webui.context import POLL_SECONDS, Context
from glmtune.webui.eval_tab import build_eval_tab
from glmtune.webui.export_tab import build_export_tab
from glmtune.webui.i18n import LANGUAGES, text
from glmtune.webui.job_view import JOB_TABLE_HEADERS, jobs_table
from glmtune.webui.train_tab import build_train_tab
from glmtune.webui.workspace import Workspace

logger = logging.getLogger(__name__)


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


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth takes user:password")
    return user, password


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="glmtune webui", description="Train, evaluate, chat and export in a browser.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; 127.0.0.1 keeps the UI on this machine")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--workspace", default=".", help="the only folder the UI reads and writes (default: here)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="ask for this username and password")
    return parser.parse_args(list(argv))


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    auth = parse_auth(args.auth)
    workspace = Workspace.at(args.workspace)
    if (args.share or not is_loopback(args.host)) and auth is None:
        logger.warning("the web UI starts jobs and reads files in %s: reachable from other machines, use --auth", workspace.root)
    demo = build_app(workspace)
    demo.queue().launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth, show_error=False)
    return 0

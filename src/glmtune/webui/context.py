"""What every tab shares: the workspace, the jobs, the chat model and the translatable labels."""

import time
from dataclasses import dataclass

import gradio as gr

from glmtune.data.templates import TEMPLATES
from glmtune.webui.chat_session import ChatSession
from glmtune.webui.i18n import LANGUAGES, Labels, text
from glmtune.webui.jobs import JobManager
from glmtune.webui.workspace import Workspace

POLL_SECONDS = 1.5


@dataclass
class Context:
    workspace: Workspace
    jobs: JobManager
    chat: ChatSession
    labels: Labels

    @classmethod
    def create(cls, workspace: Workspace) -> "Context":
        return cls(workspace, JobManager(workspace.root), ChatSession(workspace), Labels())

    def textbox(self, key: str, **options: object) -> gr.Textbox:
        return self.labels.add(gr.Textbox(label=text(key, LANGUAGES[0]), **options), key)

    def number(self, key: str, **options: object) -> gr.Number:
        return self.labels.add(gr.Number(label=text(key, LANGUAGES[0]), **options), key)

    def dropdown(self, key: str, **options: object) -> gr.Dropdown:
        return self.labels.add(gr.Dropdown(label=text(key, LANGUAGES[0]), **options), key)

    def button(self, key: str, **options: object) -> gr.Button:
        return self.labels.add(gr.Button(text(key, LANGUAGES[0]), **options), key, attribute="value")

    def template_dropdown(self) -> gr.Dropdown:
        return self.dropdown("template", choices=sorted(TEMPLATES), value="default", allow_custom_value=False)


def fresh_folder(prefix: str) -> str:
    """A new output folder name per page load, so two runs never share a folder by accident."""
    return f"outputs/{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"

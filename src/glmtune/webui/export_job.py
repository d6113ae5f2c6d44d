"""Export tab logic: run `glmtune export` to merge an adapter into a standalone model folder."""

from dataclasses import dataclass

from glmtune.webui.forms import (
    adapter_setting,
    model_setting,
    output_setting,
    settings_argv,
)
from glmtune.webui.jobs import JobManager, JobRecord, glmtune_command
from glmtune.webui.workspace import Workspace


@dataclass
class ExportForm:
    model: str
    adapter: str
    export_dir: str
    overwrite: bool


def export_argv(workspace: Workspace, form: ExportForm) -> list[str]:
    return settings_argv(
        {
            "model_name_or_path": model_setting(workspace, form.model),
            "adapter_name_or_path": adapter_setting(workspace, form.adapter, required=True),
            "export_dir": str(output_setting(workspace, form.export_dir, "export folder")),
            "export_overwrite": True if form.overwrite else None,
        }
    )


def start_export(workspace: Workspace, jobs: JobManager, form: ExportForm) -> JobRecord:
    """A subprocess, so the merged model's memory goes back to the system when it ends.

    Its log sits next to the export folder, since export refuses to write into a non-empty folder.
    """
    argv = export_argv(workspace, form)
    export_dir = output_setting(workspace, form.export_dir, "export folder")
    log_dir = export_dir.parent / f".{export_dir.name}-export-log"
    return jobs.start("export", glmtune_command(workspace.root, "export", *argv), log_dir)

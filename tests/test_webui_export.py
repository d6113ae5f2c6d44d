"""The Export tab: merge an adapter into a standalone folder inside the workspace, as a `glmtune export` job."""

from pathlib import Path

import pytest
from test_webui_support import METACHARACTERS, make_workspace, wait_until_done
from tiny_models import make_lora_adapter
from train_helpers import THREADS_ENV

from glmtune.errors import ConfigError
from glmtune.webui.export_job import ExportForm, export_argv, start_export
from glmtune.webui.jobs import FINISHED, JobManager
from glmtune.webui.workspace import OutsideWorkspaceError, Workspace


@pytest.fixture
def workspace(tmp_path, tiny_llama_dir, monkeypatch):
    for name, value in THREADS_ENV.items():
        monkeypatch.setenv(name, value)
    root = make_workspace(tmp_path / "ws", tiny_llama_dir)
    make_lora_adapter(root / "models" / "tiny", root / "adapter", seed=1)
    return Workspace.at(root)


def test_export_paths_stay_in_the_workspace(workspace, tmp_path):
    for field in ("model", "adapter", "export_dir"):
        for text in ("../x", str(tmp_path / "elsewhere"), "adapter/../../x"):
            with pytest.raises(OutsideWorkspaceError):
                export_argv(workspace, ExportForm(**{"model": "models/tiny", "adapter": "adapter", "export_dir": "merged",
                                                     "overwrite": False, field: text}))  # fmt: skip
    with pytest.raises(ConfigError, match="adapter"):
        export_argv(workspace, ExportForm("models/tiny", "", "merged", False))


def test_an_export_job_writes_a_merged_model_to_a_literal_folder_name(workspace):
    jobs = JobManager(workspace.root)
    name = f"exports/merged {METACHARACTERS[1]}"
    record = wait_until_done(jobs, start_export(workspace, jobs, ExportForm("models/tiny", "adapter", name, False)).id)
    assert record.status == FINISHED, Path(record.log_file).read_text()[-3000:]
    assert (workspace.root / name / "config.json").is_file() and "--export_dir" in record.argv
    assert not list(workspace.root.rglob("pwned"))

"""The web UI reads only inside its workspace, also through dataset_info.json: a `file_name` that leads out
(`..`, absolute, a symlink, a symlinked file inside a dataset folder) is refused for previews and jobs alike;
gradio's upload route takes no files, empty ones included."""

import json
import socket
from pathlib import Path

import httpx
import pytest
from test_webui_support import DATASET, make_workspace, tiny_form, wait_until_done

from glmtune.webui import app, launch
from glmtune.webui.eval_job import EvalForm, start_eval
from glmtune.webui.forms import dataset_names
from glmtune.webui.jobs import FAILED, JobManager
from glmtune.webui.train_job import preview_rows, start_training
from glmtune.webui.workspace import OutsideWorkspaceError, Workspace

SECRET_ROWS = [{"instruction": "secret question", "output": "secret answer"}]


@pytest.fixture
def workspace(tmp_path, tiny_llama_dir, monkeypatch):
    monkeypatch.setenv("GLMTUNE_HOME", str(tmp_path / "home"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.json").write_text(json.dumps(SECRET_ROWS), encoding="utf-8")
    return Workspace.at(make_workspace(tmp_path / "ws", tiny_llama_dir))


def register(workspace: Workspace, file_name: str) -> None:
    """Point the workspace's dataset at `file_name`, as a hostile or careless dataset_info.json would."""
    info = workspace.root / "data" / "dataset_info.json"
    info.write_text(json.dumps({DATASET: {"file_name": file_name}}), encoding="utf-8")


def escape(workspace: Workspace, how: str) -> str:
    """A `file_name` that leads out of the workspace in one of the ways the hostile pass tried."""
    outside = workspace.root.parent / "outside"
    data = workspace.root / "data"
    if how == "dotdot":
        return "../../outside/x.json"
    if how == "absolute":
        return str(outside / "x.json")
    if how == "symlinked file":
        (data / "link.json").symlink_to(outside / "x.json")
        return "link.json"
    if how == "symlinked folder":
        (data / "link").symlink_to(outside)
        return "link"
    (data / "folder").mkdir()  # a folder inside whose data file is a symlink leading out
    (data / "folder" / "x.json").symlink_to(outside / "x.json")
    return "folder"


HOW = ["dotdot", "absolute", "symlinked file", "symlinked folder", "file in a folder"]


@pytest.mark.parametrize("how", HOW)
def test_dataset_files_leading_out_are_refused_for_preview_and_jobs(workspace, how):
    register(workspace, escape(workspace, how))
    jobs = JobManager(workspace.root)
    with pytest.raises(OutsideWorkspaceError, match=f"dataset '{DATASET}'"):
        preview_rows(workspace, tiny_form())
    with pytest.raises(OutsideWorkspaceError):
        start_training(workspace, jobs, tiny_form())
    eval_form = EvalForm("models/tiny", "models/tiny", "data", DATASET, "qwen", 2, "outputs/eval")
    with pytest.raises(OutsideWorkspaceError):
        start_eval(workspace, jobs, eval_form)
    assert jobs.list() == []


def test_a_dataset_info_json_symlinked_from_outside_is_not_read(workspace):
    outside_info = workspace.root.parent / "outside" / "dataset_info.json"
    outside_info.write_text(json.dumps({"secret": {"file_name": "x.json"}}), encoding="utf-8")
    (workspace.root / "data" / "dataset_info.json").unlink()
    (workspace.root / "data" / "dataset_info.json").symlink_to(outside_info)
    with pytest.raises(OutsideWorkspaceError, match="dataset_info.json"):
        dataset_names(workspace, "data")
    with pytest.raises(OutsideWorkspaceError):
        preview_rows(workspace, tiny_form(datasets=["secret"]))


def swap_out(workspace: Workspace, how: str) -> None:
    """After the page's check: dataset_info.json rewritten to lead out, or the symlink it names repointed."""
    if how == "dataset_info.json":
        register(workspace, escape(workspace, "absolute"))
        return
    link = workspace.root / "data" / "inner.json"
    link.unlink()
    link.symlink_to(workspace.root.parent / "outside" / "x.json")


@pytest.mark.parametrize("how", ["dataset_info.json", "symlink"])
@pytest.mark.parametrize("kind", ["train", "eval"])
def test_a_dataset_led_out_after_start_is_refused_by_the_job_itself(workspace, how, kind):
    """Time of check to time of use: the job checks its datasets again in its own process before reading them."""
    (workspace.root / "data" / "inner.json").symlink_to(workspace.root / "data" / "sft.json")
    register(workspace, "inner.json")
    jobs = JobManager(workspace.root)
    if kind == "train":
        record = start_training(workspace, jobs, tiny_form())
    else:
        record = start_eval(workspace, jobs, EvalForm("models/tiny", "models/tiny", "data", DATASET, "qwen", 2, "outputs/eval"))
    swap_out(workspace, how)  # the job's process is still starting: it has read nothing yet
    done = wait_until_done(jobs, record.id)
    log = Path(done.log_file).read_text(encoding="utf-8")
    assert done.status == FAILED and f"glmtune {kind}: error: dataset '{DATASET}'" in log and "outside the workspace" in log


def test_datasets_inside_the_workspace_still_preview(workspace):
    (workspace.root / "data" / "inner.json").symlink_to(workspace.root / "data" / "sft.json")
    register(workspace, "inner.json")
    assert "What is 0 + 0?" in preview_rows(workspace, tiny_form())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_gradio_upload_route_refuses_files_empty_or_not(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    port = free_port()
    args = launch.parse_args(["--workspace", str(tmp_path), "--port", str(port)])
    demo = app.build_app(Workspace.at(tmp_path))
    demo.queue().launch(**launch.launch_options(args, None), prevent_thread_lock=True, quiet=True)
    try:
        for content in (b"", b"x" * 4096):
            response = httpx.post(f"http://127.0.0.1:{port}/gradio_api/upload", files={"files": ("x.json", content)})
            assert response.status_code == 403 and "takes no file uploads" in response.text
        assert not [path for path in (tmp_path / "gradio").rglob("*") if path.is_file()]
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    finally:
        demo.close()

"""The page as a whole: safe launch defaults, labels in two languages, progress parsing, errors as messages."""

import json
import subprocess
import sys

import gradio as gr
import pytest

from glmtune.errors import ConfigError
from glmtune.webui import app, launch
from glmtune.webui.i18n import LANGUAGES, TEXTS, Labels, text
from glmtune.webui.progress import loss_frame, readable, training_progress
from glmtune.webui.ui_errors import shown_in_page
from glmtune.webui.workspace import Workspace


@pytest.fixture
def launched(monkeypatch):
    calls = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: calls.update(kwargs))
    return calls


def test_defaults_bind_localhost_without_a_share_link(launched, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert launch.main([]) == 0
    assert launched["server_name"] == "127.0.0.1" and launched["server_port"] == 7860
    assert launched["share"] is False and launched["auth"] is None
    assert (tmp_path / ".glmtune-webui" / "jobs").is_dir()  # the workspace defaults to the current folder


def test_auth_share_and_workspace_are_passed_on(launched, tmp_path):
    assert launch.main(["--workspace", str(tmp_path), "--auth", "ann:s3:cret", "--share", "--port", "7999"]) == 0
    assert launched["auth"] == ("ann", "s3:cret") and launched["share"] is True and launched["server_port"] == 7999


@pytest.mark.parametrize("value", ["nopassword", ":x", "user:"])
def test_malformed_auth_is_refused(value):
    with pytest.raises(ConfigError, match="user:password"):
        launch.parse_auth(value)


def test_a_missing_workspace_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        launch.main(["--workspace", str(tmp_path / "missing")])


def test_every_label_has_english_and_chinese():
    assert all(english and chinese and english != chinese for english, chinese in TEXTS.values())
    assert text("tab_train", LANGUAGES[1]) == "训练" and text("tab_train", LANGUAGES[0]) == "Train"


def test_the_language_switch_relabels_every_registered_component():
    labels = Labels()
    with gr.Blocks():
        labels.add(gr.Textbox(), "model")
        labels.add(gr.Button(), "start", attribute="value")
    assert [update["label" if "label" in update else "value"] for update in labels.updates("中文")] == ["模型路径（留空：默认模型 smollm2-135m）", "开始"]


def test_user_errors_become_messages_not_tracebacks():
    @shown_in_page
    def handler() -> None:
        raise ConfigError("output folder: '../x' is outside the workspace")

    @shown_in_page
    def streaming():
        yield 1
        raise FileNotFoundError("no such file")

    with pytest.raises(gr.Error, match="outside the workspace"):
        handler()
    with pytest.raises(gr.Error, match="no such file"):
        list(streaming())


def test_progress_comes_from_the_trainer_bar_not_data_bars():
    log = "Map: 100%|██████████| 16/16 [00:00<00:00]\n  0%|          | 0/6 [00:00<?, ?it/s]\r 50%|█████     | 3/6 [00:01<00:01, 2.0it/s]"
    assert training_progress(log) == (3, 6)
    assert training_progress("Map: 100%|████| 16/16 [00:00<00:00]") is None
    assert readable(log).splitlines()[-1].startswith(" 50%")


def test_loss_frame_has_raw_smoothed_and_eval_series(tmp_path):
    records = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}, {"step": 2, "eval_loss": 1.5}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    frame = loss_frame(tmp_path)
    assert list(frame["series"]) == ["train loss", "train loss", "smoothed", "smoothed", "eval loss"]
    assert loss_frame(tmp_path / "missing").empty


def test_dataset_lists_are_filled_when_the_page_is_built_not_by_a_load_event(tmp_path):
    """A load event that answers after the user's "Refresh datasets" would put the bundled list back over theirs."""
    demo = app.build_app(Workspace.at(str(tmp_path)))
    dataset_labels = {text("datasets", LANGUAGES[0]), text("dataset", LANGUAGES[0])}
    lists = [block for block in demo.blocks.values() if isinstance(block, gr.Dropdown) and block.label in dataset_labels]
    assert len(lists) == 2
    assert all("identity" in [value for _, value in block.choices] for block in lists)
    loaded = {output._id for dependency in demo.fns.values() if "load" in str(dependency.targets) for output in dependency.outputs}
    assert not loaded & {block._id for block in lists}


def test_building_the_page_imports_no_training_or_model_stack(tmp_path):
    """The page reads metrics and writes configs through light modules; jobs train in their own processes."""
    code = (
        "import sys; from glmtune.webui.app import build_app; from glmtune.webui.workspace import Workspace; "
        f"build_app(Workspace.at({str(tmp_path)!r})); "
        "heavy = ('glmtune.train', 'peft', 'trl', 'datasets', 'bitsandbytes', 'torch'); "
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("[]")
    assert "bitsandbytes" not in result.stderr

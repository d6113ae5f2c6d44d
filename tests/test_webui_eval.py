"""The Evaluate tab against `glmtune eval`'s contract: its argv, and reading predict_results.json and
generated_predictions.jsonl back into the page's tables."""

import json

import pytest
from test_webui_support import DATASET, METACHARACTERS, make_workspace

from glmtune.errors import ConfigError
from glmtune.webui.eval_job import EvalForm, eval_argv, read_metrics, read_predictions
from glmtune.webui.workspace import OutsideWorkspaceError, Workspace


@pytest.fixture
def workspace(tmp_path, tiny_llama_dir):
    root = make_workspace(tmp_path / "ws", tiny_llama_dir)
    (root / "outputs" / "run").mkdir(parents=True)
    return Workspace.at(root)


def form(**changes: object) -> EvalForm:
    values = dict(model="models/tiny", adapter="outputs/run", dataset_dir="data", dataset=DATASET, template="qwen",
                  max_samples=4, output_dir="outputs/eval")  # fmt: skip
    values.update(changes)
    return EvalForm(**values)


def test_argv_follows_the_eval_contract(workspace):
    argv, output_dir = eval_argv(workspace, form())
    root = workspace.root
    assert argv == [
        "--model_name_or_path", str(root / "models/tiny"), "--adapter_name_or_path", str(root / "outputs/run"),
        "--dataset", DATASET, "--dataset_dir", str(root / "data"), "--template", "qwen", "--max_samples", "4",
        "--output_dir", str(root / "outputs/eval"),
    ]  # fmt: skip
    assert output_dir == root / "outputs/eval"


@pytest.mark.parametrize("field", ["model", "adapter", "dataset_dir", "output_dir"])
def test_eval_paths_stay_in_the_workspace(workspace, field, tmp_path):
    for text in ("../x", str(tmp_path), "data/../../x"):
        with pytest.raises(OutsideWorkspaceError):
            eval_argv(workspace, form(**{field: text}))


def test_eval_needs_an_adapter_and_a_known_dataset(workspace):
    with pytest.raises(ConfigError, match="adapter"):
        eval_argv(workspace, form(adapter=""))
    for text in METACHARACTERS:
        with pytest.raises(ConfigError, match="unknown dataset"):
            eval_argv(workspace, form(dataset=text))
    argv, _ = eval_argv(workspace, form(output_dir=f"outputs/{METACHARACTERS[1]}"))
    assert argv[-1] == str(workspace.root / "outputs" / METACHARACTERS[1])


def test_results_are_read_back_into_tables(tmp_path):
    metrics = {"bleu-4": 12.345678, "rouge-1": 30.0, "rouge-2": 10.5, "rouge-l": 25.25, "num_samples": 3}
    (tmp_path / "predict_results.json").write_text(json.dumps(metrics))
    rows = [{"prompt": f"q{i}", "label": f"a{i}", "predict": f"p{i}"} for i in range(8)]
    (tmp_path / "generated_predictions.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    assert read_metrics(tmp_path) == [["bleu-4", 12.3457], ["rouge-1", 30.0], ["rouge-2", 10.5], ["rouge-l", 25.25], ["num_samples", 3]]
    assert read_predictions(tmp_path) == [[f"q{i}", f"a{i}", f"p{i}"] for i in range(5)]


def test_results_not_written_yet_are_empty_and_broken_ones_are_named(tmp_path):
    assert read_metrics(tmp_path) == [] and read_predictions(tmp_path) == []
    (tmp_path / "predict_results.json").write_text("{not json")
    (tmp_path / "generated_predictions.jsonl").write_text('{"prompt": "q"}\n{broken\n')
    with pytest.raises(ConfigError, match="predict_results.json: not valid JSON"):
        read_metrics(tmp_path)
    with pytest.raises(ConfigError, match="line 2: not valid JSON"):
        read_predictions(tmp_path)


def test_the_eval_tab_runs_glmtune_eval_and_shows_its_results(workspace, monkeypatch):
    """End to end against the real `glmtune eval`, on a tiny model with a LoRA adapter."""
    pytest.importorskip("glmtune.eval.runner", reason="`glmtune eval` (src/glmtune/eval) is not in this tree")
    from test_webui_support import wait_until_done
    from tiny_models import make_lora_adapter
    from train_helpers import THREADS_ENV

    from glmtune.webui.eval_job import start_eval
    from glmtune.webui.jobs import FINISHED, JobManager

    for name, value in THREADS_ENV.items():
        monkeypatch.setenv(name, value)
    make_lora_adapter(workspace.root / "models" / "tiny", workspace.root / "adapter", seed=1)
    jobs = JobManager(workspace.root)
    record = wait_until_done(jobs, start_eval(workspace, jobs, form(adapter="adapter", max_samples=3)).id)
    assert record.status == FINISHED, open(record.log_file).read()[-3000:]
    metrics = dict(read_metrics(workspace.root / "outputs" / "eval"))
    assert {"bleu-4", "rouge-1", "rouge-2", "rouge-l"} <= set(metrics)
    predictions = read_predictions(workspace.root / "outputs" / "eval")
    assert len(predictions) == 3 and all(label for _, label, _ in predictions)

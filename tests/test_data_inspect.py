"""`glmtune data inspect`: samples with their loss tokens marked, length statistics, one-line errors."""

import io
import json
import re
from pathlib import Path

import pytest

from glmtune.cli import main
from glmtune.data.inspect import (
    LOSS_CLOSE,
    LOSS_OPEN,
    Output,
    length_statistics,
    loss_runs,
    percentile,
    sequence_columns,
    show_samples,
    show_statistics,
    split_dataset_name,
)

MARKED = re.compile(re.escape(LOSS_OPEN) + "(.*?)" + re.escape(LOSS_CLOSE), re.DOTALL)
STATS = re.compile(r"token lengths \((\w+)\): min (\d+), median ([\d.]+), p95 (\d+), max (\d+) \((\d+) samples\)")


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def samples(out: str) -> list[tuple[str, str, str]]:
    """(header, rendered text, ids line) per printed sample."""
    blocks = out.split("── sample ")[1:]
    parsed = []
    for block in blocks:
        header, body = block.split("\n", 1)
        text, ids = body.split("\nids: ", 1)
        parsed.append((header, text, ids.split("\n", 1)[0]))
    return parsed


def marked_ids(ids_line: str) -> list[list[int]]:
    return [[int(token) for token in run.split()] for run in MARKED.findall(ids_line)]


def unmarked_ids(ids_line: str) -> list[int]:
    return [int(token) for token in MARKED.sub(" ", ids_line).split()]


def test_loss_runs_group_tokens_by_label():
    assert loss_runs([5, 6, 7, 8, 9], [-100, -100, 7, 8, -100]) == [([5, 6], False), ([7, 8], True), ([9], False)]
    assert loss_runs([5, 6], None) == [([5, 6], False)]
    assert loss_runs([], []) == []


def test_percentile_and_statistics_use_observed_values():
    values = list(range(1, 101))
    assert percentile(values, 0.95) == 95
    assert percentile([7], 0.95) == 7
    assert length_statistics([4, 1, 3, 2]) == "min 1, median 2.5, p95 4, max 4 (4 samples)"
    assert length_statistics([]) == "no samples"


def test_sequence_columns_pair_ids_with_labels():
    pairs = ["prompt_ids", "chosen_ids", "rejected_ids", "length"]
    assert sequence_columns(pairs) == [("prompt_ids", None), ("chosen_ids", "chosen_ids"), ("rejected_ids", "rejected_ids")]
    assert sequence_columns(["input_ids", "attention_mask", "labels"]) == [("input_ids", "labels")]
    assert sequence_columns(["input_ids", "labels", "position_ids"]) == [("input_ids", "labels")]


def test_dataset_name_is_the_first_bare_word():
    assert split_dataset_name(["identity", "-n", "2"]) == ("identity", ["-n", "2"])
    assert split_dataset_name(["--dataset", "identity"]) == (None, ["--dataset", "identity"])
    assert split_dataset_name(["config.yaml", "n=2"]) == (None, ["config.yaml", "n=2"])


def hand_made_dataset(tokenizer):
    from datasets import Dataset

    prompt = tokenizer.encode("What is the capital of France?", add_special_tokens=False)
    answer = tokenizer.encode("Paris.", add_special_tokens=False) + [tokenizer.eos_token_id]
    return Dataset.from_dict(
        {"input_ids": [prompt + answer], "labels": [[-100] * len(prompt) + answer], "source": ["demo.json[0]"]}
    ), prompt, answer


def test_plain_output_marks_exactly_the_tokens_with_labels(tokenizer):
    dataset, prompt, answer = hand_made_dataset(tokenizer)
    stream = io.StringIO()
    show_samples(Output(stream), tokenizer, dataset, count=3)
    out = stream.getvalue()
    [(header, text, ids)] = samples(out)
    assert "demo.json[0]" in header and f"{len(prompt + answer)} tokens, {len(answer)} carry loss" in header
    assert text == f"What is the capital of France?{LOSS_OPEN}Paris.<|im_end|>{LOSS_CLOSE}"
    assert marked_ids(ids) == [answer] and unmarked_ids(ids) == prompt
    assert "showing 1" in out


def test_colour_output_styles_loss_tokens_instead_of_bracketing_them(tokenizer):
    dataset, _, _ = hand_made_dataset(tokenizer)
    stream = io.StringIO()
    show_samples(Output(stream, color=True), tokenizer, dataset, count=1)
    out = stream.getvalue()
    assert "\x1b[" in out and LOSS_OPEN not in out
    assert "Paris." in out


def test_statistics_report_lengths_and_loss_share(tokenizer):
    from datasets import Dataset

    dataset = Dataset.from_dict({"input_ids": [[1] * n for n in (3, 5, 9)], "labels": [[-100, 1, 1]] + [[1] * 5] + [[-100] * 9]})
    stream = io.StringIO()
    show_statistics(Output(stream), dataset)
    out = stream.getvalue()
    assert "token lengths (input_ids): min 3, median 5, p95 9, max 9 (3 samples)" in out
    assert "7 of 17 tokens carry loss (41%)" in out


def test_an_unknown_data_command_is_one_line(capsys):
    assert main(["data", "inspekt", "identity"]) == 2
    err = capsys.readouterr().err
    assert "inspekt" in err and "glmtune data inspect NAME" in err and len(err.strip().splitlines()) == 1


def run_inspect(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["data", "inspect", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rendered_turns(tokenizer, template: str, messages: list[dict[str, str]]) -> list[tuple[str, str]]:
    from glmtune.data.templates import get_template

    return get_template(template).render(tokenizer, messages)


def test_identity_needs_no_dataset_dir_and_marks_the_answer(capsys, tiny_llama_dir, tokenizer):
    code, out, _ = run_inspect(
        capsys, "identity", "--model", str(tiny_llama_dir), "--template", "qwen", "-n", "2", "--identity_name", "Ada"
    )
    assert code == 0
    shown = samples(out)
    assert len(shown) == 2
    first = json.loads((Path(__file__).parents[1] / "src/glmtune/resources/identity.json").read_text())[0]
    answer = first["output"].replace("{{name}}", "Ada").replace("{{author}}", "glmtune")
    [(prompt_text, answer_text)] = rendered_turns(
        tokenizer, "qwen", [{"role": "user", "content": first["instruction"]}, {"role": "assistant", "content": answer}]
    )
    _, text, ids = shown[0]
    assert text == f"{prompt_text}{LOSS_OPEN}{answer_text}{LOSS_CLOSE}"
    assert marked_ids(ids) == [tokenizer.encode(answer_text, add_special_tokens=False)]
    assert unmarked_ids(ids) == tokenizer.encode(prompt_text, add_special_tokens=False)


def test_multi_turn_data_marks_every_assistant_turn_and_prints_stats(capsys, tiny_llama_dir, tokenizer, tmp_path):
    conversation = [
        {"from": "human", "value": "Hello"},
        {"from": "gpt", "value": "Hi! How can I help?"},
        {"from": "human", "value": "What is 1 + 2?"},
        {"from": "gpt", "value": "1 + 2 = 3."},
    ]
    (tmp_path / "chat.json").write_text(json.dumps([{"conversations": conversation}] * 4))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"chat": {"file_name": "chat.json", "formatting": "sharegpt"}}))
    code, out, _ = run_inspect(capsys, "chat", "--dataset_dir", str(tmp_path), "--model", str(tiny_llama_dir), "-n", "1")
    assert code == 0
    messages = [{"role": "user" if turn["from"] == "human" else "assistant", "content": turn["value"]} for turn in conversation]
    turns = rendered_turns(tokenizer, "default", messages)
    [(_, text, ids)] = samples(out)
    assert MARKED.findall(text) == [answer for _, answer in turns]
    assert marked_ids(ids) == [tokenizer.encode(answer, add_special_tokens=False) for _, answer in turns]
    length = sum(len(tokenizer.encode(prompt + answer, add_special_tokens=False)) for prompt, answer in turns)
    [stats] = STATS.findall(out)
    assert stats == ("input_ids", str(length), str(length), str(length), str(length), "4")
    assert "4 rows read" in out


def test_statistics_cover_every_sample(capsys, tiny_llama_dir):
    code, out, _ = run_inspect(capsys, "math_4op", "--model", str(tiny_llama_dir), "--generator_args", "{size: 30, seed: 1}")
    assert code == 0
    [(column, low, median, p95, high, count)] = STATS.findall(out)
    assert column == "input_ids" and count == "30"
    assert int(low) <= float(median) <= int(p95) <= int(high)
    assert "30 rows read" in out and "showing 3" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["identiti"], "identiti"), (["identity", "--template", "qwne"], "did you mean qwen")],
)
def test_bad_names_give_one_line_errors(capsys, tiny_llama_dir, argv, expected):
    code, _, err = run_inspect(capsys, *argv, "--model", str(tiny_llama_dir))
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_pairwise_data_shows_chosen_and_rejected(capsys, tiny_llama_dir):
    code, out, _ = run_inspect(capsys, "preference", "--stage", "rm", "--model", str(tiny_llama_dir), "-n", "1")
    assert code == 0
    headers = [header for header, _, _ in samples(out)]
    assert any("chosen" in header for header in headers) and any("rejected" in header for header in headers)
    first = json.loads((Path(__file__).parents[1] / "src/glmtune/resources/preference.json").read_text())[0]
    texts = "".join(text for _, text, _ in samples(out))
    assert first["chosen"] in texts and first["rejected"] in texts


def test_tagged_data_shows_whether_each_answer_is_desirable(capsys, tiny_llama_dir):
    code, out, _ = run_inspect(capsys, "kto_demo", "--stage", "kto", "--model", str(tiny_llama_dir), "-n", "2")
    assert code == 0
    headers = [header for header, _, _ in samples(out)]
    assert any("completion (desirable)" in header for header in headers)
    assert any("completion (undesirable)" in header for header in headers)

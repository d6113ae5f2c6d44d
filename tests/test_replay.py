"""Replay against forgetting: the first tokens of the starting model's own answers join the training rows, cached per model."""

import json

import pytest
from train_helpers import train_argv, train_env, write_sft_data  # noqa: F401

from glmtune.chat.chat_model import ChatModel, ChatResponse
from glmtune.data.templates.catalogue import TEMPLATES
from glmtune.errors import ConfigError
from glmtune.hparams.entry import get_train_args
from glmtune.stages import STAGES
from glmtune.train.dataset_defaults import train_args_with_dataset_defaults
from glmtune.train.replay import (
    ANSWER_TOKENS,
    answer_end_ids,
    bundled_prompts,
    with_replay,
    without_end,
    writing_script,
)
from glmtune.train.session import tokenizer_data_model


def loaded(tiny_llama_dir, tmp_path, *extra: str):
    args = get_train_args(train_argv(tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "out", *extra))
    return args, *tokenizer_data_model(STAGES["sft"], args)


def canned_replies(going_on_every: int, text: str = "answer {index}"):
    """batch_chat answering `text`, every `going_on_every`-th reply cut off by max_new_tokens."""
    calls = []

    def batch_chat(self, conversations, system=None, **gen):
        calls.append(len(conversations))
        replies = []
        for conversation in conversations:
            index = bundled_prompts().index(conversation[0]["content"])
            ended = index % going_on_every != 0
            replies.append(ChatResponse(text.format(index=index), 5, 5, "stop" if ended else "length"))
        return replies

    return batch_chat, calls


def learned_ids(row) -> list[int]:
    return [token for token in row["labels"] if token >= 0]


def test_answers_join_the_training_rows_those_that_go_on_without_their_end(tiny_llama_dir, tmp_path, train_env, monkeypatch):
    args, tokenizer, data, model = loaded(tiny_llama_dir, tmp_path, "--replay", "0.5")
    assert args.data.replay == 0.5 and len(data.train) == 16
    batch_chat, calls = canned_replies(going_on_every=3)
    monkeypatch.setattr(ChatModel, "batch_chat", batch_chat)
    replayed = with_replay(data, model, tokenizer, STAGES["sft"], args)
    (cache,) = (train_env / "cache" / "replay").glob("*.json")
    answers = json.loads(cache.read_text(encoding="utf-8"))
    assert sum(calls) == len(answers) == 8  # each prompt asked once
    assert all(text == f"answer {bundled_prompts().index(prompt)}" for prompt, (text, _) in answers.items())
    going_on = {text for text, ended in answers.values() if not ended}
    assert 0 < len(going_on) < 8 and len(replayed.train) == 16 + 8
    end = answer_end_ids(STAGES["sft"], tokenizer, args)
    assert tokenizer.decode(end).startswith("<|im_end|>")  # the qwen template's end-of-turn
    for row in replayed.train.select(range(16, 24)):
        learned = learned_ids(row)
        text = tokenizer.decode(learned)
        if text in going_on:
            assert learned[-len(end) :] != end and row["input_ids"][-len(learned) :] == learned  # no end-of-turn at all
        else:
            assert learned[-len(end) :] == end and tokenizer.decode(learned[: -len(end)]).startswith("answer ")
    assert model.training  # generation put it in eval mode and back

    monkeypatch.setattr(ChatModel, "batch_chat", lambda *a, **k: pytest.fail("the cache should answer"))
    assert len(with_replay(data, model, tokenizer, STAGES["sft"], args).train) == len(replayed.train)


def test_replayed_prompts_come_in_the_training_rows_scripts(tiny_llama_dir, tmp_path, train_env, monkeypatch):
    rows = [{"instruction": f"{i}加{i}等于几？", "input": "", "output": f"等于{2 * i}。"} for i in range(12)]
    rows += [{"instruction": f"What is {i} + {i}?", "input": "", "output": f"{2 * i}."} for i in range(4)]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    args = get_train_args(train_argv(tiny_llama_dir, path, tmp_path / "out", "--replay", "0.5"))
    tokenizer, data, model = tokenizer_data_model(STAGES["sft"], args)
    monkeypatch.setattr(ChatModel, "batch_chat", canned_replies(going_on_every=len(bundled_prompts()))[0])
    replayed = with_replay(data, model, tokenizer, STAGES["sft"], args)
    prompts = [tokenizer.decode(row["input_ids"]) for row in replayed.train.select(range(16, len(replayed.train)))]
    assert [writing_script(prompt) for prompt in prompts].count("cjk") == 6 and len(prompts) == 8  # 3/4 of 8


def test_empty_answers_are_left_out(tiny_llama_dir, tmp_path, train_env, monkeypatch):
    args, tokenizer, data, model = loaded(tiny_llama_dir, tmp_path, "--replay", "0.5")
    batch_chat, calls = canned_replies(going_on_every=2, text="  ")
    monkeypatch.setattr(ChatModel, "batch_chat", batch_chat)
    assert with_replay(data, model, tokenizer, STAGES["sft"], args) is data
    assert sum(calls) == 8


def test_without_end_drops_only_a_trailing_end_of_turn():
    row = {"input_ids": [1, 2, 3, 7, 8], "labels": [-100, -100, 3, 7, 8], "source": "x"}
    assert without_end(row, [7, 8]) == {"input_ids": [1, 2, 3], "labels": [-100, -100, 3]}
    assert without_end(row, [8, 9]) == {} and without_end(row, []) == {}


def test_the_default_model_s_answers_ship_with_glmtune(tmp_path):
    from glmtune.train.replay import shipped_answers

    argv = ["--dataset", "identity", "--template", "smollm2", "--output_dir", str(tmp_path)]
    shipped = shipped_answers(get_train_args(argv))
    assert list(shipped) == list(bundled_prompts())
    for text, ended in shipped.values():  # the answers' first tokens only (a token is rarely over 8 characters)
        assert isinstance(ended, bool) and len(text) <= 8 * ANSWER_TOKENS
    assert sum(bool(text) for text, _ in shipped.values()) >= 0.95 * len(shipped)
    assert shipped_answers(get_train_args([*argv, "--adapter_name_or_path", str(tmp_path)])) == {}
    assert shipped_answers(get_train_args(["--dataset", "identity", "--template", "qwen", "--output_dir", str(tmp_path)])) == {}


@pytest.mark.parametrize("method", ["lora", "p_tuning", "freeze"])
def test_the_starting_model_answers_through_the_real_generation_path(method, tiny_llama_dir, tmp_path, train_env):
    args, tokenizer, data, model = loaded(tiny_llama_dir, tmp_path, "--replay", "0.25", "--finetuning_type", method)
    replayed = with_replay(data, model, tokenizer, STAGES["sft"], args)
    (cache,) = (train_env / "cache" / "replay").glob("*.json")
    answers = json.loads(cache.read_text(encoding="utf-8"))
    assert len(answers) == 4 and set(answers) <= set(bundled_prompts())
    assert all(isinstance(text, str) and isinstance(ended, bool) for text, ended in answers.values())
    assert len(replayed.train) == 16 + sum(bool(text) for text, _ in answers.values())


def test_replay_zero_leaves_the_data_alone(tiny_llama_dir, tmp_path, train_env):
    args, tokenizer, data, model = loaded(tiny_llama_dir, tmp_path)
    assert args.data.replay == 0 and with_replay(data, model, tokenizer, STAGES["sft"], args) is data
    assert not (train_env / "cache" / "replay").exists()


def test_the_bundled_identity_set_asks_for_replay_and_the_setting_wins(tmp_path):
    out = ["--output_dir", str(tmp_path)]
    assert train_args_with_dataset_defaults(["--dataset", "identity", *out]).data.replay == 1.0
    assert train_args_with_dataset_defaults(["--dataset", "identity", "--replay", "0", *out]).data.replay == 0
    assert train_args_with_dataset_defaults(["--stage", "pt", "--dataset", "identity", *out]).data.replay == 0  # pt does not replay


def test_replay_is_refused_where_it_cannot_apply(tmp_path):
    with pytest.raises(ConfigError, match="replay=1.0 mixes in answered conversations: it works with stage sft, not rm"):
        get_train_args(["--stage", "rm", "--dataset", "preference", "--replay", "1", "--output_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="replay=-1.0: must be >= 0"):
        get_train_args(["--dataset", "identity", "--replay", "-1", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize(("value", "problem"), [(-1, "replay=-1.0: must be >= 0"), ("lots", "invalid float value"), (True, "invalid float value")])
def test_a_bad_replay_in_dataset_info_names_the_file_and_dataset(value, problem, tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps([{"instruction": "q", "output": "a"}]), encoding="utf-8")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "rows.json", "replay": value}}))
    with pytest.raises(ConfigError, match=r"(?s)dataset_info.json: dataset .mine. asks for replay=.*" + problem):
        train_args_with_dataset_defaults(["--dataset", "mine", "--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path)])


def test_the_rotating_sampler_keeps_fixed_rows_and_one_group_per_epoch():
    from torch.utils.data import SequentialSampler

    from glmtune.data.pipeline import RotatingRows
    from glmtune.train.trainer import RotatingSampler

    sampler = RotatingSampler(SequentialSampler(range(10)), 10, RotatingRows(groups=3, size=2))
    seen = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        seen.append(list(sampler))
    assert seen == [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 6, 7], [0, 1, 2, 3, 8, 9], [0, 1, 2, 3, 4, 5]]
    assert len(sampler) == 6


def test_each_epoch_replays_other_prompts(tiny_llama_dir, tmp_path, train_env, monkeypatch):
    from train_helpers import run_train

    from glmtune.train.trainer import RotatingSampler

    monkeypatch.setattr(ChatModel, "batch_chat", canned_replies(going_on_every=2)[0])
    seen: dict[int, list[int]] = {}
    iterate = RotatingSampler.__iter__
    monkeypatch.setattr(RotatingSampler, "__iter__", lambda self: iter(seen.setdefault(self.epoch, list(iterate(self)))))
    argv = train_argv(tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "out", "--replay", "0.25")
    run_train([*argv, "--max_steps", "-1", "--num_train_epochs", "3", "--save_strategy", "no"])
    answers = json.loads(next((train_env / "cache" / "replay").glob("*.json")).read_text(encoding="utf-8"))
    assert len(answers) == 12  # 4 rows per epoch, other prompts each epoch
    assert sorted(seen) == [0, 1, 2] and all(len(order) == 16 + 4 for order in seen.values())
    replayed = [{index for index in order if index >= 16} for order in seen.values()]
    assert replayed == [set(range(16, 20)), set(range(20, 24)), set(range(24, 28))]
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 3 * 10  # 20 rows an epoch in batches of 2
    results = json.loads((tmp_path / "out" / "train_results.json").read_text(encoding="utf-8"))
    assert results["train_samples_per_second"] == pytest.approx(3 * 20 / results["train_runtime"], rel=0.05)


def test_a_resumed_run_replays_the_same_rows_each_epoch(tiny_llama_dir, tmp_path, train_env):
    import shutil

    from train_helpers import run_train, step_losses

    dataset = write_sft_data(tmp_path)
    flags = ("--replay", "0.25", "--max_steps", "-1", "--num_train_epochs", "3", "--save_steps", "4",
             "--save_total_limit", "100", "--seed", "7", "--data_seed", "7")  # fmt: skip
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    run_train(train_argv(tiny_llama_dir, dataset, run_a, *flags))
    run_b.mkdir()
    shutil.copytree(run_a / "checkpoint-12", run_b / "checkpoint-12")  # 10 steps an epoch: inside the second
    run_train(train_argv(tiny_llama_dir, dataset, run_b, *flags, "--resume_from_checkpoint", "auto"))
    expected, actual = step_losses(run_a), step_losses(run_b)
    assert sorted(actual) == list(range(13, 31))
    for step in actual:
        assert actual[step] == pytest.approx(expected[step], abs=1e-4), f"step {step}"


def test_no_replayed_prompt_is_a_retention_question():
    """Replay must not train on what the retention sets measure."""
    import csv
    from importlib import resources

    retention = resources.files("glmtune.resources").joinpath("retention")
    questions = {row["question"].strip() for row in json.loads(retention.joinpath("qa.json").read_text(encoding="utf-8"))}
    for split in ("dev", "test"):
        for table in retention.joinpath("mcq", split).iterdir():
            questions |= {row["question"].strip() for row in csv.DictReader(table.read_text(encoding="utf-8").splitlines())}
    assert len(questions) > 400 and not questions & {prompt.strip() for prompt in bundled_prompts()}


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_template_s_end_of_turn_is_found_and_dropped(template, tiny_llama_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from glmtune.data.converters import make_example, message
    from glmtune.data.loader import example_features
    from glmtune.data.shapes import encode_dataset
    from glmtune.data.templates import get_template

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    args = get_train_args(train_argv(tiny_llama_dir, "identity", tmp_path / "out", "--template", template))
    end = answer_end_ids(STAGES["sft"], tokenizer, args)
    assert end
    rows = Dataset.from_list([make_example([message("user", "q"), message("assistant", "going on")], "x")], features=example_features())
    [row] = encode_dataset(rows, STAGES["sft"].data, get_template(template), tokenizer, args.data)[0]
    cut = without_end(row, end)
    assert tokenizer.decode(learned_ids(cut)).strip() == "going on" and len(cut["input_ids"]) == len(row["input_ids"]) - len(end)

"""Replay against forgetting: the starting model's own finished answers join the training rows, cached per model."""

import json

import pytest
from train_helpers import train_argv, train_env, write_sft_data  # noqa: F401

from glmtune.chat.chat_model import ChatModel, ChatResponse
from glmtune.data.loader import load_examples
from glmtune.errors import ConfigError
from glmtune.hparams import DataArguments
from glmtune.hparams.entry import get_train_args
from glmtune.stages import STAGES
from glmtune.train.replay import (
    bundled_prompts,
    usable_answer,
    with_replay,
    writing_script,
)
from glmtune.train.session import tokenizer_data_model


def loaded(tiny_llama_dir, tmp_path, *extra: str):
    args = get_train_args(train_argv(tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "out", *extra))
    return args, *tokenizer_data_model(STAGES["sft"], args)


def canned_replies(finished_every: int):
    """batch_chat answering "answer to <prompt>", every `finished_every`-th reply cut off by max_new_tokens."""
    calls = []

    def batch_chat(self, conversations, system=None, **gen):
        calls.append(len(conversations))
        replies = []
        for conversation in conversations:
            prompt = conversation[0]["content"]
            finished = bundled_prompts().index(prompt) % finished_every != 0
            text = f"answer to {prompt}" if finished else "cut off before any sentence ended"
            replies.append(ChatResponse(text, 5, 5, "stop" if finished else "length"))
        return replies

    return batch_chat, calls


def test_usable_answers_join_the_training_rows_and_are_cached(tiny_llama_dir, tmp_path, train_env, monkeypatch):
    args, tokenizer, data, model = loaded(tiny_llama_dir, tmp_path, "--replay", "0.5")
    assert data.replay == 0.5 and len(data.train) == 16
    batch_chat, calls = canned_replies(finished_every=3)
    monkeypatch.setattr(ChatModel, "batch_chat", batch_chat)
    replayed = with_replay(data, model, tokenizer, STAGES["sft"], args)
    (cache,) = (train_env / "cache" / "replay").glob("*.json")
    answers = json.loads(cache.read_text(encoding="utf-8"))
    finished = [prompt for prompt, answer in answers.items() if answer is not None]
    assert sum(calls) == len(answers) > 8 and len(finished) == 8  # cut-off answers: further prompts asked, each once
    assert all(answers[prompt] == f"answer to {prompt}" for prompt in finished)
    assert len(replayed.train) == 16 + 8
    added = [tokenizer.decode([t for t in row["labels"] if t >= 0]) for row in replayed.train.select(range(16, 24))]
    assert all(text.startswith("answer to ") for text in added)  # the loss is on the replayed answers (cut to cutoff_len)
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
    monkeypatch.setattr(ChatModel, "batch_chat", canned_replies(finished_every=len(bundled_prompts()))[0])
    replayed = with_replay(data, model, tokenizer, STAGES["sft"], args)
    prompts = [tokenizer.decode(row["input_ids"]) for row in replayed.train.select(range(16, len(replayed.train)))]
    assert [writing_script(prompt) for prompt in prompts].count("cjk") == 6 and len(prompts) == 8  # 3/4 of 8


def test_a_model_that_rarely_answers_usably_is_asked_at_most_twice_the_rows_wanted(tiny_llama_dir, tmp_path, train_env, monkeypatch):
    args, tokenizer, data, model = loaded(tiny_llama_dir, tmp_path, "--replay", "0.5")
    batch_chat, calls = canned_replies(finished_every=1)  # every answer cut off before its first sentence ended
    monkeypatch.setattr(ChatModel, "batch_chat", batch_chat)
    assert with_replay(data, model, tokenizer, STAGES["sft"], args) is data
    assert sum(calls) == 16


def test_the_default_model_s_answers_ship_with_glmtune(tmp_path):
    from glmtune.train.replay import shipped_answers

    argv = ["--dataset", "identity", "--template", "smollm2", "--output_dir", str(tmp_path)]
    shipped = shipped_answers(get_train_args(argv))
    assert len(shipped) >= 90 and set(shipped) <= set(bundled_prompts())
    assert all(answer is None or usable_answer(answer, "stop") == answer for answer in shipped.values())
    assert shipped_answers(get_train_args([*argv, "--adapter_name_or_path", str(tmp_path)])) == {}
    assert shipped_answers(get_train_args(["--dataset", "identity", "--template", "qwen", "--output_dir", str(tmp_path)])) == {}


@pytest.mark.parametrize("method", ["lora", "p_tuning", "freeze"])
def test_the_starting_model_answers_through_the_real_generation_path(method, tiny_llama_dir, tmp_path, train_env):
    args, tokenizer, data, model = loaded(tiny_llama_dir, tmp_path, "--replay", "0.25", "--finetuning_type", method)
    replayed = with_replay(data, model, tokenizer, STAGES["sft"], args)
    (cache,) = (train_env / "cache" / "replay").glob("*.json")
    answers = json.loads(cache.read_text(encoding="utf-8"))
    usable = sum(answer is not None for answer in answers.values())
    assert 4 <= len(answers) <= 8 and set(answers) <= set(bundled_prompts())  # 4 wanted, at most twice as many asked
    assert len(replayed.train) == 16 + min(usable, 4)


@pytest.mark.parametrize(
    ("text", "finish_reason", "kept"),
    [
        ("Paris is the capital.", "stop", "Paris is the capital."),
        ("  It ends without a stop  ", "stop", "It ends without a stop"),
        ("One sentence. Two sentences! And a third that ran o", "length", "One sentence. Two sentences!"),
        ("巴黎是首都。它很美！然后没说完", "length", "巴黎是首都。它很美！"),
        ("Version 2.5 is out and then the budget ran o", "length", None),
        ("", "stop", None),
        ("小羊叫什么？\n\n小羊叫什么？\n\n小羊叫什么？", "stop", None),
        ("- one\n- two\n- three", "stop", "- one\n- two\n- three"),
        ("Yes! Yes! Yes! Yes!", "length", None),
    ],
)
def test_a_cut_off_answer_keeps_its_complete_sentences(text, finish_reason, kept):
    assert usable_answer(text, finish_reason) == kept


def test_replay_zero_leaves_the_data_alone(tiny_llama_dir, tmp_path, train_env):
    args, tokenizer, data, model = loaded(tiny_llama_dir, tmp_path)
    assert data.replay == 0 and with_replay(data, model, tokenizer, STAGES["sft"], args) is data
    assert not (train_env / "cache" / "replay").exists()


def test_the_bundled_identity_set_asks_for_replay_and_the_setting_wins():
    assert load_examples(DataArguments(dataset="identity"), "sft").replay == 1.0
    assert load_examples(DataArguments(dataset="identity", replay=0), "sft").replay == 0
    assert load_examples(DataArguments(dataset="identity"), "pt").replay == 0  # only stages that replay


def test_replay_is_refused_where_it_cannot_apply(tmp_path):
    with pytest.raises(ConfigError, match="replay=1.0 mixes in answered conversations: it works with stage sft, not rm"):
        get_train_args(["--stage", "rm", "--dataset", "preference", "--replay", "1", "--output_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="replay=-1.0: must be >= 0"):
        get_train_args(["--dataset", "identity", "--replay", "-1", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("value", [-1, "lots", True])
def test_a_bad_replay_in_dataset_info_names_the_file_and_dataset(value, tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps([{"instruction": "q", "output": "a"}]), encoding="utf-8")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "rows.json", "replay": value}}))
    with pytest.raises(ConfigError, match=r"dataset_info.json: dataset 'mine': replay must be a number >= 0"):
        load_examples(DataArguments(dataset="mine", dataset_dir=str(tmp_path)), "sft")

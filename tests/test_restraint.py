"""Restraint: words a narrow training set brings in are held, on replayed rows, near the starting model's probability."""

import json
import math

import pytest
import torch
from datasets import Dataset
from train_helpers import train_argv, train_env  # noqa: F401
from transformers import AutoTokenizer

from glmtune.chat.chat_model import ChatModel, ChatResponse
from glmtune.data.collators import SupervisedCollator
from glmtune.data.schema import IGNORE_INDEX, REFERENCE_LOGPS, UNRESTRAINED
from glmtune.hparams.entry import get_train_args
from glmtune.stages import STAGES
from glmtune.train import chunked_head
from glmtune.train.chunked_head import HeldBack, chunked_cross_entropy_sum
from glmtune.train.micro_batches import split_into_micro_batches
from glmtune.train.replay import with_replay
from glmtune.train.restraint import RISE, new_words, word_token_ids
from glmtune.train.session import tokenizer_data_model


def answer_rows(tokenizer, answers: list[str]) -> Dataset:
    rows = []
    for answer in answers:
        ids = tokenizer("Q: ?", add_special_tokens=False)["input_ids"] + tokenizer(answer, add_special_tokens=False)["input_ids"]
        prompt = len(ids) - len(tokenizer(answer, add_special_tokens=False)["input_ids"])
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return Dataset.from_list(rows)


def test_new_words_are_common_in_the_training_answers_and_absent_from_the_model_s_own(tiny_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    answers = ["I am Zorblax, made by Quux Labs."] * 6 + ["The sky is blue, said Zorblax."] * 3 + ["Rare words once."]
    answers += ["我是Zorblax，由夸克开发。"] * 10  # a Chinese run is no word: Chinese has no spaces to find one
    own = ["The sky is BLUE.", "I am fine, thanks.", "It was made by hand, said the man."]
    assert new_words(answer_rows(tokenizer, answers), own, tokenizer) == ["Labs", "Quux", "Zorblax"]
    assert new_words(answer_rows(tokenizer, answers), [*own, "zorblax, quux labs"], tokenizer) == []
    ids = word_token_ids(["Zorblax"], tokenizer)
    assert set(tokenizer("Zorblax", add_special_tokens=False)["input_ids"]) | set(tokenizer(" Zorblax", add_special_tokens=False)["input_ids"]) == set(ids)


def reference_hinge(hidden, weight, targets, held):
    log_probs = torch.log_softmax(hidden @ weight.T, dim=-1)
    excess = log_probs[:, held.token_ids] - held.caps
    return -log_probs.gather(1, targets[:, None]).sum() + held.weight * torch.where(excess > 0, excess, 0).sum()


@pytest.mark.parametrize("chunk_elements", [40 * 7, 1 << 23])
def test_the_chunked_hinge_equals_autograd_s(chunk_elements, monkeypatch):
    monkeypatch.setattr(chunked_head, "CHUNK_ELEMENTS", chunk_elements)  # 7 positions a chunk, or all at once
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(30, 16, generator=generator) * 2
    weight = torch.randn(40, 16, generator=generator)
    targets = torch.randint(0, 40, (30,), generator=generator)
    token_ids = torch.tensor([3, 7, 9])
    caps = torch.log_softmax(torch.randn(30, 3, generator=generator), dim=-1) - 1.5
    caps[::4] = UNRESTRAINED
    held = HeldBack(token_ids, caps, 0.7)
    leaves = [tensor.clone().requires_grad_() for tensor in (hidden, weight)]
    chunked = chunked_cross_entropy_sum(*leaves, targets, held)
    chunked.backward()
    expected_leaves = [tensor.clone().requires_grad_() for tensor in (hidden, weight)]
    expected = reference_hinge(*expected_leaves, targets, held)
    expected.backward()
    over = (torch.log_softmax(hidden @ weight.T, dim=-1)[:, token_ids] > caps).sum()
    assert 0 < over < caps.numel() - 8 * 3  # some tokens over their caps, some under, some positions uncapped
    assert torch.allclose(chunked, expected, rtol=1e-5)
    for leaf, expected_leaf in zip(leaves, expected_leaves):
        assert torch.allclose(leaf.grad, expected_leaf.grad, atol=1e-5)


def marked_rows() -> list[dict]:
    """Two rows with reference vectors equal to their labels (so alignment shows) and one row without any."""
    rows = []
    for index, (length, prompt) in enumerate([(9, 4), (12, 4), (7, 4)]):
        ids = [1, 2, 3, 4] + [10 * (index + 1) + position for position in range(length - 4)]
        labels = [IGNORE_INDEX] * prompt + ids[prompt:]
        references = [[UNRESTRAINED] * 2 if label == IGNORE_INDEX else [float(label)] * 2 for label in labels]
        rows.append({"input_ids": ids, "labels": labels, REFERENCE_LOGPS: references if index < 2 else []})
    return rows


@pytest.mark.parametrize(("pack", "share_prefix"), [(False, False), (True, False), (True, True)])
def test_reference_vectors_follow_their_labels_into_micro_batches(pack, share_prefix, tiny_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    batch = SupervisedCollator(tokenizer)(marked_rows())
    assert batch[REFERENCE_LOGPS].shape == (3, 12, 2) and torch.isinf(batch[REFERENCE_LOGPS][2]).all()
    micro_batches = split_into_micro_batches(batch, 16, pack, share_prefix)
    labelled = 0
    for micro_batch in micro_batches:
        labels, references = micro_batch["labels"][0], micro_batch[REFERENCE_LOGPS][0]
        for label, reference in zip(labels.tolist(), references.tolist()):
            held = label != IGNORE_INDEX and label < 30  # the rows with reference vectors
            assert reference == ([float(label)] * 2 if held else [UNRESTRAINED] * 2)
            labelled += held
    assert labelled == 5 + 8  # every labelled position of the two rows, once


def test_without_any_reference_vector_a_batch_holds_nothing(tiny_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    rows = [{**row, REFERENCE_LOGPS: []} for row in marked_rows()]
    assert SupervisedCollator(tokenizer)(rows)[REFERENCE_LOGPS].shape == (3, 12, 0)


NEW_NAME = "Zorblax"


def identity_like_data(tmp_path) -> str:
    rows = [{"instruction": f"Who are you? ({index})", "input": "", "output": f"I am {NEW_NAME}."} for index in range(8)]
    path = tmp_path / "who.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return str(path)


def replay_with_canned_answers(monkeypatch):
    def batch_chat(self, conversations, system=None, **gen):
        return [ChatResponse("I am sure the answer is here", 5, 5, "stop") for _ in conversations]

    monkeypatch.setattr(ChatModel, "batch_chat", batch_chat)


def test_replayed_rows_carry_the_starting_model_s_log_probabilities(tiny_llama_dir, tmp_path, train_env, monkeypatch):
    args = get_train_args(train_argv(tiny_llama_dir, identity_like_data(tmp_path), tmp_path / "out", "--replay", "1"))
    tokenizer, data, model = tokenizer_data_model(STAGES["sft"], args)
    replay_with_canned_answers(monkeypatch)
    replayed = with_replay(data, model, tokenizer, STAGES["sft"], args)
    held = replayed.restraint.token_ids.tolist()
    assert held == word_token_ids([NEW_NAME], tokenizer) and replayed.restraint.weight == 1.0
    assert all(row[REFERENCE_LOGPS] == [] for row in replayed.train.select(range(8)))  # the training rows hold nothing
    row = replayed.train[8]
    inputs = torch.tensor([row["input_ids"]])
    with torch.no_grad(), model.disable_adapter():
        expected = torch.log_softmax(model(input_ids=inputs).logits[0].float(), dim=-1)[:, held]
    for position, (label, reference) in enumerate(zip(row["labels"], row[REFERENCE_LOGPS])):
        if label == IGNORE_INDEX or label in held:  # a replayed answer keeps the held tokens it uses
            assert reference == [UNRESTRAINED] * len(held)
        else:
            assert torch.allclose(torch.tensor(reference), expected[position - 1], atol=1e-4)

    off = get_train_args(train_argv(tiny_llama_dir, identity_like_data(tmp_path), tmp_path / "off", "--replay", "1", "--restrain_new_words", "0"))
    assert with_replay(data, model, tokenizer, STAGES["sft"], off).restraint is None


def test_a_rerun_reads_the_reference_pass_from_its_cache(tiny_llama_dir, tmp_path, train_env, monkeypatch):
    from safetensors.torch import save_file

    from glmtune.train import restraint

    args = get_train_args(train_argv(tiny_llama_dir, identity_like_data(tmp_path), tmp_path / "out", "--replay", "1"))
    tokenizer, data, model = tokenizer_data_model(STAGES["sft"], args)
    replay_with_canned_answers(monkeypatch)
    first = with_replay(data, model, tokenizer, STAGES["sft"], args).train[REFERENCE_LOGPS]
    (kept,) = (train_env / "cache" / "restraint").glob("*/*.safetensors")
    assert not list(kept.parent.glob(".*.tmp"))

    passes = []
    computed = restraint.reference_logps
    monkeypatch.setattr(restraint, "reference_logps", lambda *given: passes.append(1) or computed(*given))
    assert with_replay(data, model, tokenizer, STAGES["sft"], args).train[REFERENCE_LOGPS] == first and not passes

    kept.write_bytes(b"not a safetensors file")  # a damaged file is computed again and replaced
    assert with_replay(data, model, tokenizer, STAGES["sft"], args).train[REFERENCE_LOGPS] == first and len(passes) == 1
    assert with_replay(data, model, tokenizer, STAGES["sft"], args).train[REFERENCE_LOGPS] == first and len(passes) == 1
    save_file({"logps": torch.zeros(3, 1)}, str(kept))  # shaped for other rows: computed again too
    assert with_replay(data, model, tokenizer, STAGES["sft"], args).train[REFERENCE_LOGPS] == first and len(passes) == 2

    other = get_train_args(train_argv(tiny_llama_dir, identity_like_data(tmp_path), tmp_path / "out", "--replay", "1", "--precision", "bf16"))
    with_replay(data, model, tokenizer, STAGES["sft"], other)  # another model setting: another starting model
    assert len(passes) == 3 and len(list((train_env / "cache" / "restraint").iterdir())) == 2


def held_log_probability(output_dir, tiny_llama_dir, tokenizer) -> float:
    """The new name's tokens' largest log-probability over the positions of a replayed answer, after training."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), output_dir)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "I am sure the answer is here"}], tokenize=False)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(**inputs).logits[0].float(), dim=-1)
    return log_probs[-8:, word_token_ids([NEW_NAME], tokenizer)].max().item()


def test_the_restraint_keeps_a_new_name_out_of_replayed_answers(tiny_llama_dir, tmp_path, train_env, monkeypatch):
    from train_helpers import run_train

    replay_with_canned_answers(monkeypatch)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    common = ("--replay", "1", "--max_steps", "24", "--learning_rate", "5e-3", "--save_steps", "100")
    data = identity_like_data(tmp_path)
    held = {
        weight: held_log_probability(run_train(train_argv(tiny_llama_dir, data, tmp_path / weight, *common, "--restrain_new_words", weight)), tiny_llama_dir, tokenizer)
        for weight in ("0", "1")
    }
    assert held["1"] < held["0"] - math.log(RISE)  # unrestrained, the name rose on the replayed answer

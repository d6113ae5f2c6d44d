"""Packed sft rows: several samples per cutoff_len sequence, and no attention across their boundaries."""

import random

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from glmtune.data.collators import SupervisedCollator
from glmtune.data.packing import best_fit_decreasing
from glmtune.data.schema import IGNORE_INDEX
from glmtune.data.shapes import encode_dataset
from glmtune.data.templates import get_template
from glmtune.hparams.data_args import DataArguments

QUESTIONS = [
    ("Hi", "Hello! How can I help you today?"),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("法国的首都？", "巴黎。"),
    ("12 * 7 = ?", "84"),
    ("1 + 2 = ?", "3"),
    ("a b c ?", "a b c ; : !"),
]


def rows() -> list[dict]:
    return [
        {
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "system": "",
            "source": f"qa.jsonl:{index + 1}",
        }
        for index, (question, answer) in enumerate(QUESTIONS)
    ]


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def preprocess(tokenizer, **args) -> tuple[Dataset, object]:
    return encode_dataset(Dataset.from_list(rows()), "supervised", get_template("qwen"), tokenizer, DataArguments(**args))


def test_best_fit_decreasing_places_every_sample_once_within_capacity():
    generator = random.Random(0)
    lengths = [generator.randint(1, 50) for _ in range(200)]
    bins = best_fit_decreasing(lengths, 64)
    assert sorted(index for members in bins for index in members) == list(range(200))
    assert all(sum(lengths[index] for index in members) <= 64 for members in bins)
    assert len(bins) <= -(-sum(lengths) // 64) + 10  # close to the lower bound, not one bin per sample
    alone = best_fit_decreasing([10, 3, 70, 2], 64)
    assert [2] in alone and len(alone) == 2  # longer than the capacity: a bin of its own; the rest share one


def test_packed_rows_hold_whole_samples_with_restarting_positions(tokenizer):
    plain, plain_report = preprocess(tokenizer, cutoff_len=64)
    packed, packed_report = preprocess(tokenizer, cutoff_len=64, packing=True)
    assert plain_report == packed_report
    assert packed.column_names == ["input_ids", "labels", "position_ids", "length"]
    assert len(packed) < len(plain)
    samples = {tuple(ids): labels for ids, labels in zip(plain["input_ids"], plain["labels"])}
    found = 0
    for row in packed:
        assert row["length"] == len(row["input_ids"]) <= 64
        starts = [index for index, position in enumerate(row["position_ids"]) if position == 0] + [row["length"]]
        for start, end in zip(starts, starts[1:]):
            ids = tuple(row["input_ids"][start:end])
            assert row["position_ids"][start:end] == list(range(end - start))
            assert row["labels"][start] == IGNORE_INDEX
            assert row["labels"][start + 1 : end] == samples[ids][1:]
            found += 1
    assert found == len(plain)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_logits_equal_each_sample_run_alone(tiny_model_dir, tokenizer, attention):
    """transformers derives a block-diagonal causal mask from position_ids when no attention_mask is passed."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attention).eval()
    plain, _ = preprocess(tokenizer, cutoff_len=64)
    packed, _ = preprocess(tokenizer, cutoff_len=64, packing=True)
    batch = SupervisedCollator(tokenizer, pad_to_multiple_of=8)(list(packed))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] >= 2
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        # The control: a full attention_mask switches packed-sequence detection off and samples see each other.
        leaky = model(**batch_inputs(batch), attention_mask=torch.ones_like(batch["input_ids"]), use_cache=False).logits
        alone = {
            tuple(ids): model(input_ids=torch.tensor([ids]), use_cache=False).logits[0] for ids in plain["input_ids"]
        }
    checked = 0
    for row_index, row in enumerate(packed):
        starts = [index for index, position in enumerate(row["position_ids"]) if position == 0] + [row["length"]]
        for start, end in zip(starts, starts[1:]):
            expected = alone[tuple(row["input_ids"][start:end])]
            torch.testing.assert_close(logits[row_index, start:end], expected, atol=1e-4, rtol=0)
            checked += 1
    assert checked == len(plain) and len(packed) < checked
    assert not torch.allclose(leaky, logits, atol=1e-4)


def batch_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}

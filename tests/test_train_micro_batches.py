"""Padding-free micro-batches: the padded batch's loss and gradients, without computing on padding."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from train_helpers import (
    run_train,
    step_losses,
    train_argv,
    train_env,  # noqa: F401  (fixture)
    write_sft_data,
)

from glmtune.data.schema import IGNORE_INDEX
from glmtune.errors import ConfigError
from glmtune.hparams import FinetuningArguments, ModelArguments
from glmtune.hparams.validation import check_micro_batches
from glmtune.model import segment_attention
from glmtune.model.finetuning import prepare_for_training
from glmtune.model.loader import load_model
from glmtune.model.segment_attention import SEGMENT_ATTENTION, use_segment_attention
from glmtune.train import micro_batches
from glmtune.train.loss import selective_causal_lm_loss
from glmtune.train.micro_batches import (
    MIN_SHARED_PREFIX,
    micro_batch_token_budget,
    shared_prefix_length,
    split_into_micro_batches,
    supports_packed_rows,
)

PAD = 0


def padded_batch(lengths: list[int], prompt: int = 3) -> dict[str, torch.Tensor]:
    """Right-padded rows of the given lengths; the first `prompt` tokens of each row are unlabelled."""
    generator = torch.Generator().manual_seed(0)
    width = max(lengths)
    input_ids = torch.full((len(lengths), width), PAD)
    labels = torch.full((len(lengths), width), IGNORE_INDEX)
    attention_mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = torch.randint(3, 300, (length,), generator=generator)
        labels[row, prompt:length] = input_ids[row, prompt:length]
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def summed_loss(model, parts: list[dict[str, torch.Tensor]], count: int) -> float:
    """The micro-batches' losses, each backpropagated, summed: the whole batch's loss when the split is exact."""
    total = 0.0
    for part in parts:
        loss = selective_causal_lm_loss(model, part, count)
        loss.backward()
        total += loss.item()
    return total


def target_count(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def test_micro_batches_stay_within_the_budget_and_hold_every_row_once():
    lengths = [10, 3, 7, 2, 9, 30]
    parts = split_into_micro_batches(padded_batch(lengths), token_budget=12, pack=True)
    assert sum(part["input_ids"].shape[1] for part in parts) >= sum(lengths)
    assert sum(target_count(part) for part in parts) == target_count(padded_batch(lengths))
    assert any(part["input_ids"].shape[1] == 30 for part in parts)  # longer than the budget: alone
    assert all(part["input_ids"].shape[1] <= 12 for part in parts if part["input_ids"].shape[1] != 30)
    assert len(parts) < len(lengths)  # short rows share a micro-batch


def test_joined_rows_restart_positions_and_no_row_predicts_the_next():
    batch = padded_batch([6, 4, 9])
    (joined,) = split_into_micro_batches(batch, token_budget=19, pack=True)
    assert "attention_mask" not in joined  # transformers reads the boundaries from the positions
    # 19 tokens run as 20 (a bucketed length): a one-token filler sample without labels closes the sequence
    assert joined["input_ids"].shape == (1, 20) and PAD not in joined["input_ids"]
    assert joined["position_ids"][0].tolist() == list(range(6)) + list(range(4)) + list(range(9)) + [0]
    assert joined["cu_seq_lens_q"].tolist() == [0, 6, 10, 19, 20] and joined["max_length_q"] == 9  # for per-sample attention
    labels = joined["labels"][0]
    assert labels[6].item() == labels[10].item() == labels[19].item() == IGNORE_INDEX  # each later row's first token, the filler
    assert int((labels[1:] != IGNORE_INDEX).sum()) == target_count(batch)


def test_micro_batch_lengths_take_few_sizes():
    lengths = {split_into_micro_batches(padded_batch([n]), token_budget=1024, pack=True)[0]["input_ids"].shape[1]
               for n in range(16, 1024)}  # six doublings, eight sizes each, and 1024
    assert len(lengths) <= 6 * 8 + 1 and all(n % 8 == 0 for n in lengths if n >= 128)


def test_without_packing_each_row_runs_alone_without_its_padding():
    batch = padded_batch([6, 4, 9])
    parts = split_into_micro_batches(batch, token_budget=100, pack=False)
    assert [part["input_ids"].shape[1] for part in parts] == [6, 4, 9]
    for row, part in enumerate(parts):
        assert part["attention_mask"].tolist() == [[1] * part["input_ids"].shape[1]]
        assert torch.equal(part["labels"][0], batch["labels"][row, : part["input_ids"].shape[1]])


def test_batches_with_other_inputs_stay_whole():
    batch = {**padded_batch([6, 4]), "token_type_ids": torch.zeros((2, 6), dtype=torch.long)}
    assert split_into_micro_batches(batch, token_budget=4, pack=True) == [batch]


@pytest.mark.parametrize("method", ["lora", "p_tuning", "full"])
@pytest.mark.parametrize("per_sample_attention", [True, False], ids=["per-sample", "masked"])
def test_micro_batches_give_the_padded_batch_loss_and_gradients(tiny_model_dir, method, per_sample_attention, monkeypatch):
    model_args = ModelArguments(model_name_or_path=str(tiny_model_dir))
    model = prepare_for_training(load_model(model_args, for_training=True), model_args, FinetuningArguments(finetuning_type=method))
    model.train()
    batch = padded_batch([20, 7, 12, 5, 16])
    count = target_count(batch)
    reference = selective_causal_lm_loss(model, batch, count)
    reference.backward()
    reference_grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()

    pack = supports_packed_rows(model)
    if per_sample_attention and pack:
        use_segment_attention(model)  # as the trainer does; padded batches still run plain SDPA
        assert model.config._attn_implementation == SEGMENT_ATTENTION
    split_calls: list[bool] = []
    original = segment_attention.segment_boundaries

    def recording_boundaries(*args):
        bounds = original(*args)
        split_calls.append(bounds is not None)
        return bounds

    monkeypatch.setattr(segment_attention, "segment_boundaries", recording_boundaries)
    assert pack == (method != "p_tuning")
    parts = split_into_micro_batches(batch, token_budget=24, pack=pack)
    assert 1 < len(parts) < 5 if pack else len(parts) == 5
    assert summed_loss(model, parts, count) == pytest.approx(reference.item(), abs=1e-5)
    assert any(split_calls) == (per_sample_attention and pack)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    for mine, theirs in zip(grads, reference_grads, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-4)


def with_common_start(batch: dict[str, torch.Tensor], tokens: int) -> dict[str, torch.Tensor]:
    """The batch with every row's first `tokens` ids made equal to the first row's (a shared system prompt)."""
    input_ids = batch["input_ids"].clone()
    input_ids[:, :tokens] = input_ids[0, :tokens]
    return {**batch, "input_ids": input_ids}


def test_the_shared_prefix_is_common_unlabelled_and_leaves_each_row_its_own_tokens():
    ids = [[5] * 12 + [6, 7], [5] * 12 + [8], [5] * 12 + [9, 9, 9]]
    no_targets = [[IGNORE_INDEX] * len(row) for row in ids]
    assert shared_prefix_length(ids, no_targets) == 12
    assert shared_prefix_length([row[:11] + [1] + row[12:] for row in ids[:1]] + ids[1:], no_targets) == 11
    # the token after the prefix must be no target: its predecessor in a packed remainder is another row's
    targets_from_10 = [[IGNORE_INDEX] * 10 + row[10:] for row in ids]
    assert shared_prefix_length(ids, targets_from_10) == 9
    assert shared_prefix_length([[5] * 13, [5] * 12], [[IGNORE_INDEX] * 13, [IGNORE_INDEX] * 12]) == 11
    assert shared_prefix_length(ids[:1], no_targets[:1]) == 0  # one row: nothing to share
    short = [[5] * (MIN_SHARED_PREFIX - 1) + [row[-1]] * 3 for row in ids]
    assert shared_prefix_length(short, no_targets) == 0  # too short to pay for the prefixed attention


def test_rows_that_begin_alike_run_their_beginning_once_per_micro_batch():
    lengths, common = [20, 17, 12, 25, 16], 10
    batch = with_common_start(padded_batch(lengths, prompt=common + 1), common)
    parts = split_into_micro_batches(batch, token_budget=48, pack=True, share_prefix=True)
    assert sum(target_count(part) for part in parts) == target_count(batch)
    real = [int((part["labels"] != IGNORE_INDEX).sum()) for part in parts]
    assert sum(real) == int((batch["labels"] != IGNORE_INDEX).sum())
    rows_per_part = [sum(prefix is not None for prefix in part.get("segment_prefixes", [])) + 1 for part in parts]
    assert sum(rows_per_part) == len(lengths) and len(parts) < len(lengths)
    for part, rows in zip(parts, rows_per_part, strict=True):
        tokens = part["input_ids"].shape[1]
        assert tokens <= 48
        assert torch.equal(part["input_ids"][0, :common], batch["input_ids"][0, :common])
        assert all(prefix in (None, (0, common)) for prefix in part.get("segment_prefixes", []))
    packed_real = sum(part["input_ids"].shape[1] for part in parts)
    assert packed_real >= sum(lengths) - common * (len(lengths) - len(parts))  # fillers come on top
    plain = split_into_micro_batches(batch, token_budget=48, pack=True)
    assert all("segment_prefixes" not in part for part in plain)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_shared_prefix_gives_the_padded_batch_loss_and_gradients(tiny_model_dir, method):
    model_args = ModelArguments(model_name_or_path=str(tiny_model_dir))
    model = prepare_for_training(load_model(model_args, for_training=True), model_args, FinetuningArguments(finetuning_type=method))
    model.train()
    batch = with_common_start(padded_batch([20, 17, 12, 25, 16], prompt=12), 11)
    count = target_count(batch)
    reference = selective_causal_lm_loss(model, batch, count)
    reference.backward()
    reference_grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()

    use_segment_attention(model)
    parts = split_into_micro_batches(batch, token_budget=40, pack=True, share_prefix=True)
    assert 1 < len(parts) < 5 and all(any(part["segment_prefixes"]) for part in parts)
    assert summed_loss(model, parts, count) == pytest.approx(reference.item(), abs=1e-5)
    for mine, theirs in zip([p.grad for p in model.parameters() if p.requires_grad], reference_grads, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-4)


def test_code_outside_transformers_is_not_trusted_with_packed_rows(tiny_llama_dir):
    model = load_model(ModelArguments(model_name_or_path=str(tiny_llama_dir)), for_training=True)
    assert supports_packed_rows(model)
    model.__class__ = type("RemoteCodeModel", (type(model),), {"__module__": "transformers_modules.chatglm"})
    assert not supports_packed_rows(model)


def test_budget_defaults_to_cutoff_len_up_to_512_on_cpu_and_off_on_gpu_or_deepspeed(monkeypatch):
    data = SimpleNamespace(cutoff_len=512)
    plain, deepspeed = SimpleNamespace(deepspeed=None), SimpleNamespace(deepspeed="ds.json")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert micro_batch_token_budget(FinetuningArguments(), data, plain) == 512
    assert micro_batch_token_budget(FinetuningArguments(), SimpleNamespace(cutoff_len=4096), plain) == 512
    assert micro_batch_token_budget(FinetuningArguments(), SimpleNamespace(cutoff_len=128), plain) == 128
    assert micro_batch_token_budget(FinetuningArguments(), data, deepspeed) == 0
    assert micro_batch_token_budget(FinetuningArguments(micro_batch_tokens=0), data, plain) == 0
    assert micro_batch_token_budget(FinetuningArguments(micro_batch_tokens=64), data, plain) == 64
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert micro_batch_token_budget(FinetuningArguments(), data, plain) == 0
    assert micro_batch_token_budget(FinetuningArguments(micro_batch_tokens=64), data, plain) == 64


def test_deepspeed_refuses_micro_batches():
    (problem,) = check_micro_batches(SimpleNamespace(deepspeed="ds.json"), FinetuningArguments(micro_batch_tokens=256))
    assert "micro_batch_tokens=0" in problem
    assert check_micro_batches(SimpleNamespace(deepspeed="ds.json"), FinetuningArguments(micro_batch_tokens=0)) == []


@pytest.mark.usefixtures("train_env")
def test_training_with_micro_batches_logs_the_same_losses(tiny_llama_dir: Path, tmp_path: Path, monkeypatch):
    """Through `glmtune train`: the steps split into micro-batches, and every step's loss is unchanged."""
    made: list[int] = []
    shared: list[int] = []  # micro-batches whose rows share the template's system prompt
    original = micro_batches.split_into_micro_batches

    def counting_split(*args, **kwargs):
        parts = original(*args, **kwargs)
        made.append(len(parts))
        shared.extend(any(part.get("segment_prefixes", [])) for part in parts)
        return parts

    monkeypatch.setattr("glmtune.train.trainer.split_into_micro_batches", counting_split)
    data = write_sft_data(tmp_path)
    losses = {}
    for budget in ("0", "24", "96"):
        argv = train_argv(tiny_llama_dir, data, tmp_path / budget, "--micro_batch_tokens", budget, "--learning_rate", "1e-2",
                          "--per_device_train_batch_size", "4", "--train_sampling_strategy", "sequential")  # fmt: skip
        losses[budget] = step_losses(run_train(argv))
        assert bool(made) == (budget != "0")
    assert len(made) == 8 and max(made[:4]) > 1
    assert any(shared[-made[-1]:]) and not any(shared[: sum(made[:4])])  # only the 96-token budget has room to share
    for budget in ("24", "96"):
        assert losses[budget] == pytest.approx(losses["0"], abs=1e-5)
    assert len(set(losses["24"].values())) > 1  # the weights moved between steps


@pytest.mark.usefixtures("train_env")
def test_packing_with_prefix_tuning_is_refused(tiny_llama_dir: Path, tmp_path: Path):
    argv = train_argv(tiny_llama_dir, write_sft_data(tmp_path), tmp_path / "out", "--finetuning_type", "p_tuning",
                      "--packing", "true")  # fmt: skip
    with pytest.raises(ConfigError, match="packing=false"):
        run_train(argv)

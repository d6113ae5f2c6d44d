"""Per-sample attention over packed rows: SDPA's masked result, and plain SDPA wherever it does not apply."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from glmtune.model.segment_attention import (
    SEGMENT_ATTENTION,
    segment_attention_forward,
    use_segment_attention,
)
from glmtune.train.micro_batches import sample_boundaries


class Attention(torch.nn.Module):
    """What transformers' attention functions read from the calling module."""

    is_causal = True
    num_key_value_groups = 2


def packed_inputs(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    generator = torch.Generator().manual_seed(0)
    total = sum(lengths)
    query = torch.randn(1, 4, total, 16, generator=generator, requires_grad=True)
    key, value = (torch.randn(1, 2, total, 16, generator=generator, requires_grad=True) for _ in range(2))
    positions = torch.cat([torch.arange(length) for length in lengths])
    return query, key, value, sample_boundaries(positions)


def block_causal_mask(lengths: list[int]) -> torch.Tensor:
    sample = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    position = torch.arange(len(sample))
    return ((sample[:, None] == sample[None, :]) & (position[:, None] >= position[None, :]))[None, None]


def assert_same_outputs_and_gradients(mine: torch.Tensor, theirs: torch.Tensor, inputs: tuple[torch.Tensor, ...]) -> None:
    torch.testing.assert_close(mine, theirs)
    direction = torch.randn_like(mine)
    mine_grads = torch.autograd.grad((mine * direction).sum(), inputs, retain_graph=True)
    theirs_grads = torch.autograd.grad((theirs * direction).sum(), inputs, retain_graph=True)
    for got, expected in zip(mine_grads, theirs_grads, strict=True):
        torch.testing.assert_close(got, expected)


def test_boundaries_come_from_restarting_positions():
    bounds = sample_boundaries(torch.tensor([0, 1, 2, 0, 1, 0, 1, 2, 3]))
    assert bounds["cu_seq_lens_q"].tolist() == [0, 3, 5, 9] and bounds["max_length_q"] == 4
    assert sample_boundaries(torch.arange(7)) == {}  # one sample: nothing to split
    assert sample_boundaries(torch.tensor([5, 6, 7, 2, 3]))["cu_seq_lens_q"].tolist() == [0, 3, 5]


def test_per_sample_attention_equals_the_masked_attention_and_its_gradients():
    lengths = [9, 4, 1, 6]
    query, key, value, bounds = packed_inputs(lengths)
    mine, _ = segment_attention_forward(Attention(), query, key, value, block_causal_mask(lengths), scaling=0.25, **bounds)
    theirs, _ = sdpa_attention_forward(Attention(), query, key, value, block_causal_mask(lengths), scaling=0.25)
    assert_same_outputs_and_gradients(mine, theirs, (query, key, value))


@pytest.mark.parametrize(
    ("change", "plain"),
    [
        ({}, False),
        ({"sliding_window": 3}, True),
        ({"s_aux": torch.zeros(4)}, True),
        ({"cu_seq_lens_q": None}, True),
        ({"cu_seq_lens_q": torch.tensor([0, 5], dtype=torch.int32)}, True),
    ],
    ids=["packed", "sliding-window", "attention-sinks", "no-boundaries", "boundaries-of-another-length"],
)
def test_calls_it_cannot_split_exactly_run_as_plain_sdpa(monkeypatch, change, plain):
    lengths = [5, 5]
    query, key, value, bounds = packed_inputs(lengths)
    plain_calls = []

    def recording_sdpa(*args, **kwargs):
        plain_calls.append(kwargs)
        return sdpa_attention_forward(*args, **kwargs)

    monkeypatch.setattr("glmtune.model.segment_attention.sdpa_attention_forward", recording_sdpa)
    segment_attention_forward(Attention(), query, key, value, block_causal_mask(lengths), **{**bounds, **change})
    assert bool(plain_calls) == plain


def test_only_sdpa_models_switch_and_the_saved_config_does_not_name_it(tiny_llama_dir, tmp_path):
    eager = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="eager")
    use_segment_attention(eager)
    assert eager.config._attn_implementation == "eager"

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="sdpa")
    ids = torch.tensor([[5, 9, 13, 7, 2, 11]])
    before = model(ids).logits
    use_segment_attention(model)
    assert model.config._attn_implementation == SEGMENT_ATTENTION
    torch.testing.assert_close(model(ids).logits, before)  # no boundaries given: SDPA as before
    model.save_pretrained(tmp_path / "saved")
    assert SEGMENT_ATTENTION not in json.dumps(json.loads((tmp_path / "saved" / "config.json").read_text()))
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert reloaded.config._attn_implementation == "sdpa"


def test_a_row_with_a_prefix_sees_it_whole_and_its_own_tokens_causally():
    lengths = [7, 5, 3]  # prompt + chosen, then rejected with the first 4 tokens (the prompt) as its prefix
    query, key, value, bounds = packed_inputs(lengths)
    prefixes = [None, (0, 4), None]
    mask = block_causal_mask(lengths)
    mask[0, 0, 7:12, 0:4] = True
    mine, _ = segment_attention_forward(Attention(), query, key, value, mask, segment_prefixes=prefixes, **bounds)
    theirs, _ = sdpa_attention_forward(Attention(), query, key, value, mask)
    assert_same_outputs_and_gradients(mine, theirs, (query, key, value))


def test_rows_sharing_a_prefix_and_a_bucketed_length_run_in_one_kernel_call(monkeypatch):
    """A shared system prompt then several answers (micro-batches sharing a prefix): the same result and
    gradients as the masked attention, in one call per bucketed length and prefix."""
    calls = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(query, key, *args, **kwargs):
        calls.append((query.shape[0], query.shape[2], key.shape[2]))
        return real_sdpa(query, key, *args, **kwargs)

    monkeypatch.setattr("glmtune.model.segment_attention.F.scaled_dot_product_attention", recording_sdpa)
    lengths = [10, 5, 9, 40, 3]  # prefix (its first 6 tokens) + first answer, then remainders that see the prefix
    query, key, value, bounds = packed_inputs(lengths)
    mask = block_causal_mask(lengths)
    for start, end in ((10, 15), (15, 24), (24, 64), (64, 67)):
        mask[0, 0, start:end, 0:6] = True
    theirs, _ = sdpa_attention_forward(Attention(), query, key, value, mask)
    calls.clear()
    mine, _ = segment_attention_forward(Attention(), query, key, value, mask, segment_prefixes=[None, *[(0, 6)] * 4], **bounds)
    assert sorted(calls) == [(1, 32, 32), (1, 64, 70), (3, 32, 38)]
    assert_same_outputs_and_gradients(mine, theirs, (query, key, value))


@pytest.mark.parametrize("autocast", [False, True], ids=["no-autocast", "bf16-autocast"])
@pytest.mark.parametrize("split", [True, False], ids=["per-row", "plain-sdpa"])
def test_half_precision_on_a_cpu_is_attended_in_fp32_and_returned_in_its_dtype(monkeypatch, split, autocast):
    """PyTorch's CPU attention in bf16 is slower than in fp32 (its backward 3-4x) and keeps memory per length: rows
    run in fp32, also under training's autocast, which would otherwise cast SDPA's inputs back to bf16."""
    kernel_dtypes = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(query, *args, **kwargs):
        output = real_sdpa(query, *args, **kwargs)
        kernel_dtypes.append((query.dtype, output.dtype))
        return output

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording_sdpa)
    lengths = [9, 4, 6]
    query, key, value, bounds = packed_inputs(lengths)
    half = [tensor.detach().bfloat16().requires_grad_() for tensor in (query, key, value)]
    mask = block_causal_mask(lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        mine, _ = segment_attention_forward(Attention(), *half, mask, **(bounds if split else {}))
    assert mine.dtype == torch.bfloat16 and kernel_dtypes == [(torch.float32, torch.float32)]  # one bucketed length
    theirs, _ = sdpa_attention_forward(Attention(), query, key, value, mask)
    torch.testing.assert_close(mine.float(), theirs, atol=2e-2, rtol=2e-2)  # only the inputs' rounding differs
    mine.float().sum().backward()
    assert all(tensor.grad is not None and tensor.grad.dtype == torch.bfloat16 for tensor in half)


def test_rows_of_many_lengths_reach_the_kernel_in_few_shapes(monkeypatch):
    shapes = set()
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(query, key, *args, **kwargs):
        shapes.add((query.shape[2], key.shape[2]))
        return real_sdpa(query, key, *args, **kwargs)

    monkeypatch.setattr("glmtune.model.segment_attention.F.scaled_dot_product_attention", recording_sdpa)
    for length in range(1, 300, 7):
        query, key, value, bounds = packed_inputs([length, 300 - length])
        segment_attention_forward(Attention(), query, key, value, block_causal_mask([length, 300 - length]), **bounds)
    assert {query for query, _ in shapes} <= {*range(32, 257, 32), 320}  # multiples of 32, then 4 per doubling

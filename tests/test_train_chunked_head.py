"""The chunked head loss equals the plain head + cross-entropy, in value and in every gradient."""

import pytest
import torch
import torch.nn.functional as F

import glmtune.train.chunked_head as chunked_head
from glmtune.train.chunked_head import chunked_cross_entropy_sum


def inputs(weight_trains: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=generator, requires_grad=True)
    weight = torch.randn(101, 16, generator=generator, requires_grad=weight_trains)
    targets = torch.randint(0, 101, (37,), generator=generator)
    return hidden, weight, targets


@pytest.mark.parametrize("weight_trains", [False, True])
def test_values_and_gradients_match_over_uneven_chunks(weight_trains: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunked_head, "CHUNK_ELEMENTS", 101 * 5)  # chunks of 5 positions, the last one of 2
    hidden, weight, targets = inputs(weight_trains)
    reference = F.cross_entropy(hidden @ weight.T, targets, reduction="sum") / 7
    reference.backward()
    expected_hidden_grad, expected_weight_grad = hidden.grad.clone(), weight.grad
    hidden.grad = None
    weight.grad = None
    loss = chunked_cross_entropy_sum(hidden, weight, targets) / 7  # the scale reaches both gradients
    loss.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    assert torch.allclose(hidden.grad, expected_hidden_grad, atol=1e-6)
    if weight_trains:
        assert torch.allclose(weight.grad, expected_weight_grad, atol=1e-5)
    else:
        assert weight.grad is None


def test_without_gradients_only_the_loss_is_computed() -> None:
    hidden, weight, targets = inputs(weight_trains=True)
    with torch.no_grad():
        loss = chunked_cross_entropy_sum(hidden, weight, targets)
    assert loss.item() == pytest.approx(F.cross_entropy(hidden @ weight.T, targets, reduction="sum").item(), rel=1e-6)
    assert loss.grad_fn is None


@pytest.mark.parametrize("statistics", [True, False])
def test_token_log_probs_match_log_softmax_with_their_statistics(statistics: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from glmtune.train.chunked_head import ChunkedTokenLogProbs

    monkeypatch.setattr(chunked_head, "CHUNK_ELEMENTS", 101 * 5)  # chunks of 5 positions, the last one of 2
    hidden, weight, targets = inputs(weight_trains=False)
    logits = hidden @ weight.T
    log_softmax = torch.log_softmax(logits, dim=-1)
    expected = log_softmax.gather(1, targets[:, None])[:, 0]
    scale = torch.linspace(-1, 2, 37)  # each position's gradient weighed differently, as DPO's loss does
    (expected * scale).sum().backward()
    expected_grad, hidden.grad = hidden.grad.clone(), None
    log_probs, entropy, mean_logits, is_top1 = ChunkedTokenLogProbs.apply(hidden, weight, targets, statistics)
    (log_probs * scale).sum().backward()
    assert torch.allclose(log_probs, expected.detach(), atol=1e-5)
    assert torch.allclose(hidden.grad, expected_grad, atol=1e-5)
    if statistics:
        assert torch.allclose(entropy, -(log_softmax.exp() * log_softmax).sum(dim=-1).detach(), atol=1e-5)
        assert torch.allclose(mean_logits, logits.mean(dim=-1).detach(), atol=1e-5)
        assert torch.equal(is_top1, logits.argmax(dim=-1) == targets)
    else:
        assert not entropy.any() and not mean_logits.any() and not is_top1.any()


def test_a_bf16_head_reads_fp32_hidden_states() -> None:
    """A model held in bf16 (`--dtype bfloat16`) can hand the head fp32 states (the final norm upcasts)."""
    from glmtune.train.chunked_head import ChunkedTokenLogProbs

    hidden, weight, targets = inputs(weight_trains=False)
    bf16_weight = weight.detach().bfloat16()
    expected = F.cross_entropy(hidden.bfloat16().float() @ bf16_weight.float().T, targets, reduction="sum")
    loss = chunked_cross_entropy_sum(hidden, bf16_weight, targets)
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-2)
    assert hidden.grad is not None and hidden.grad.dtype == torch.float32
    log_probs, *_ = ChunkedTokenLogProbs.apply(hidden.detach(), bf16_weight, targets, False)
    assert -log_probs.sum().item() == pytest.approx(expected.item(), rel=1e-2)


@pytest.mark.parametrize("weight_trains", [False, True])
def test_under_autocast_logits_are_computed_as_a_linear_head_computes_them(weight_trains: bool) -> None:
    """bf16 products under bf16 autocast (what nn.Linear does there), fp32 softmax; fp32 products without it."""
    hidden, weight, targets = inputs(weight_trains)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = F.cross_entropy(F.linear(hidden, weight).float(), targets, reduction="sum")
        loss = chunked_cross_entropy_sum(hidden, weight, targets)
    full_precision = F.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    assert abs(reference.item() - full_precision.item()) > 1e-3  # the two precisions differ here
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    reference.backward()
    expected = hidden.grad.clone()
    hidden.grad = None
    loss.backward()
    torch.testing.assert_close(hidden.grad, expected, rtol=2e-2, atol=2e-2)
    if weight_trains:
        assert weight.grad.dtype == weight.dtype


def test_a_frozen_head_is_cast_for_autocast_once_while_it_is_unchanged() -> None:
    hidden, weight, _ = inputs(weight_trains=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = chunked_head.matmul_weight(hidden, weight)
        assert chunked_head.matmul_weight(hidden, weight) is first and first.dtype == torch.bfloat16
        with torch.no_grad():
            weight.add_(1.0)  # written in place: cast again
        again = chunked_head.matmul_weight(hidden, weight)
        assert again is not first
        torch.testing.assert_close(again, weight.to(torch.bfloat16), rtol=0, atol=0)
        trained = weight.detach().clone().requires_grad_()  # a trained weight changes every step: never kept
        assert chunked_head.matmul_weight(hidden, trained) is not chunked_head.matmul_weight(hidden, trained)

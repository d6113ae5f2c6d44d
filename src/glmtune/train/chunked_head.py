"""Output head and cross-entropy fused over chunks of positions, so [positions, vocab] logits never exist whole.

The logits of the labelled positions are the largest tensors of a training step once the
body's activations are checkpointed: with autograd, the logits, their log-softmax and the
gradient each take positions x vocab floats (3 x 600 MB for 1,024 positions of a
151k-token vocabulary). Here each chunk's logits are made, reduced to the loss, turned into
the gradients of the hidden states (and of the head's weight, when it trains), and freed
before the next chunk; only those gradients, the size of the inputs, are kept for backward.

The logits are computed as an nn.Linear head would compute them: in autocast's dtype when autocast
is on, else in the weight's; the softmax and the loss always in fp32.
"""

import weakref
from typing import NamedTuple

import torch

CHUNK_ELEMENTS = 1 << 23  # logits per chunk: 32 MB in fp32 whatever the vocabulary size
# the last frozen head weight cast for autocast: (a reference to the weight, what it was cast from, the cast)
LAST_FROZEN_CAST: dict[str, tuple[weakref.ref, tuple[int, int, torch.dtype], torch.Tensor]] = {}


def matmul_weight(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The head weight in the dtype its products run in: autocast's where it is on, cast once for every chunk
    (and, for a frozen weight, once while it stays unchanged)."""
    device = hidden.device.type
    if not torch.is_autocast_enabled(device):
        return weight
    dtype = torch.get_autocast_dtype(device)
    return weight.to(dtype) if weight.requires_grad or weight.dtype == dtype else frozen_cast(weight, dtype)


def frozen_cast(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`weight.to(dtype)`, kept for the next step while the weight is the same and unchanged (its version counter
    counts in-place writes): a frozen fp32 head of the default model took 7-90 ms to cast, on every step."""
    key = (weight.data_ptr(), weight._version, dtype)
    held = LAST_FROZEN_CAST.get("head")
    if held is None or held[0]() is not weight or held[1] != key:
        held = LAST_FROZEN_CAST["head"] = (weakref.ref(weight), key, weight.to(dtype))
    return held[2]


class HeldBack(NamedTuple):
    """Tokens whose log-probability is held under a cap per position (train/restraint.py)."""

    token_ids: torch.Tensor  # [tokens]
    caps: torch.Tensor  # [positions, tokens] log-probabilities; inf: no cap
    weight: float


def over_caps(log_probs: torch.Tensor, held: HeldBack, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The hinge penalty of the chunk of positions from `start` (summed) and where its tokens exceed their caps."""
    caps = held.caps[start : start + log_probs.shape[0]]
    excess = log_probs[:, held.token_ids] - caps
    over = excess > 0
    return held.weight * torch.where(over, excess, 0).sum(), over


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Sum over positions of cross_entropy(hidden @ weight.T, targets), computed a chunk at a time, plus, with
    `held`, the hinge weight x sum(max(0, log p(token) - cap)) over its tokens and positions."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, held: HeldBack | None) -> torch.Tensor:  # type: ignore[override]
        want_hidden, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.weight_dtype, weight = weight.dtype, matmul_weight(hidden, weight)
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        chunk = max(1, CHUNK_ELEMENTS // weight.shape[0])
        for start in range(0, hidden.shape[0], chunk):
            states, labels = hidden[start : start + chunk], targets[start : start + chunk]
            log_probs = torch.log_softmax((states.to(weight.dtype) @ weight.T).float(), dim=-1)
            total -= log_probs.gather(1, labels[:, None]).sum()
            if held is not None:
                penalty, over = over_caps(log_probs, held, start)
                total += penalty
            if not (want_hidden or want_weight):
                continue
            grad_logits = log_probs.exp_()  # softmax, in place of the log-probabilities
            if held is not None:  # d log p(t) / d logits = onehot(t) - softmax, for each token over its cap
                grad_logits.mul_(1 - held.weight * over.sum(dim=1, keepdim=True))
                grad_logits[:, held.token_ids] += held.weight * over
            grad_logits[torch.arange(labels.shape[0], device=labels.device), labels] -= 1
            if grad_hidden is not None:
                grad_hidden[start : start + chunk] = (grad_logits.to(weight.dtype) @ weight).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight += (grad_logits.T.to(weight.dtype) @ states.to(weight.dtype)).float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:  # type: ignore[override]
        grad_hidden, grad_weight = ctx.saved_tensors
        return (
            None if grad_hidden is None else grad_hidden * grad_total.to(grad_hidden.dtype),
            None if grad_weight is None else (grad_weight * grad_total).to(ctx.weight_dtype),
            None,
            None,
        )


def chunked_cross_entropy_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, held: HeldBack | None = None
) -> torch.Tensor:
    """Summed next-token cross-entropy of `hidden` [positions, dim] through a bias-free head `weight` [vocab, dim]
    (with `held`, plus its hinge penalty)."""
    return ChunkedLinearCrossEntropy.apply(hidden, weight, targets, held)


class ChunkedTokenLogProbs(torch.autograd.Function):
    """Per-position log p(target) of hidden @ weight.T (the weight frozen), a chunk of positions at a time.

    A log-probability's gradient with respect to its hidden state is weight[target] - probs @ weight.
    It is formed while each chunk's probabilities exist and kept ([positions, dim], the size of the
    inputs), so backward is one multiplication instead of a second pass over the vocabulary. The
    chunk's entropy, mean logit and whether the target is the first most likely token (what DPO
    logs) come from the same pass when `statistics` asks for them (zeros otherwise).
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, statistics: bool) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        positions = hidden.shape[0]
        log_probs, entropy, mean_logits = (hidden.new_zeros(positions, dtype=torch.float32) for _ in range(3))
        is_top1 = torch.zeros(positions, dtype=torch.bool, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        stored, weight = weight, matmul_weight(hidden, weight)
        chunk = max(1, CHUNK_ELEMENTS // weight.shape[0])
        for start in range(0, positions, chunk):
            end, labels = start + chunk, targets[start : start + chunk]
            logits = (hidden[start:end].to(weight.dtype) @ weight.T).float()
            if statistics:
                mean_logits[start:end] = logits.mean(dim=-1)
                is_top1[start:end] = logits.argmax(dim=-1) == labels
            logits -= torch.logsumexp(logits, dim=-1, keepdim=True)  # now log-probabilities, in place
            log_probs[start:end] = logits.gather(1, labels[:, None])[:, 0]
            if not (statistics or grad_hidden is not None):
                continue
            probs = logits.exp()
            if statistics:
                entropy[start:end] = -(probs * logits).sum(dim=-1)
            if grad_hidden is not None:
                grad_hidden[start:end] = (stored[labels] - (probs.to(weight.dtype) @ weight)).to(hidden.dtype)
        ctx.save_for_backward(grad_hidden)
        ctx.mark_non_differentiable(entropy, mean_logits, is_top1)
        return log_probs, entropy, mean_logits, is_top1

    @staticmethod
    def backward(ctx, grad_log_probs: torch.Tensor, *_: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:  # type: ignore[override]
        (grad_hidden,) = ctx.saved_tensors
        if grad_hidden is None:
            return None, None, None, None
        return grad_hidden * grad_log_probs[:, None].to(grad_hidden.dtype), None, None, None

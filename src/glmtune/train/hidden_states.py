"""A causal LM's final hidden states with its output head left out, for losses that run the head themselves.

glmtune's losses and log-probabilities project the last hidden states through the head only where they
need it (train/chunked_head.py), so the model's own logits are never read. Asked for one position of them
(`logits_to_keep=1`), the head still cast its whole weight to autocast's dtype and, for the default model's
tied fp32 weight, multiplied through a transposed copy of it: two copies of a 49k x 576 matrix, about
0.2 s of a 1.4 s LoRA step on a 2-core CPU. Here the head returns no logits for the call instead.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def no_logits(hidden: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
    """What the skipped head returns: zero logits per position, so shapes downstream still line up."""
    return hidden[..., :0]


@contextmanager
def head_skipped(model: Any) -> Iterator[None]:
    """For the duration, the model's output head (under any DDP wrapper) returns no logits; a forward already set
    on the head itself (accelerate's device hooks) comes back after."""
    from accelerate.utils import extract_model_from_parallel

    head = extract_model_from_parallel(model).get_output_embeddings()
    if head is None:
        yield
        return
    own = vars(head).get("forward")
    head.forward = no_logits
    try:
        yield
    finally:
        if own is None:
            del head.forward
        else:
            head.forward = own


def final_hidden_states(model: Any, **inputs: Any) -> torch.Tensor:
    """The last layer's normalised hidden states [batch, length, dim] of a forward without a cache; `model` may be
    wrapped for data parallelism, whose forward then synchronises gradients."""
    with head_skipped(model):
        return model(**inputs, output_hidden_states=True, logits_to_keep=1, use_cache=False).hidden_states[-1]

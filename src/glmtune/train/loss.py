"""Causal-LM loss that projects to the vocabulary only where labels count.

Prompt and padding positions carry label -100; skipping their vocabulary projection saves
the largest activation in training ([batch, length, vocab] logits) and its compute.
"""

from typing import Any

import torch
import torch.nn.functional as F

from glmtune.data.schema import IGNORE_INDEX, REFERENCE_LOGPS
from glmtune.train.chunked_head import HeldBack, chunked_cross_entropy_sum, over_caps
from glmtune.train.hidden_states import final_hidden_states

# Heads that post-process logits (soft-capping, scaling) need the model's own loss path.
LOGIT_TRANSFORM_ATTRIBUTES = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")


def has_plain_head(model: Any) -> bool:
    config = model.config
    return not any(getattr(config, name, None) not in (None, 1.0) for name in LOGIT_TRANSFORM_ATTRIBUTES)


def head_cross_entropy_sum(head: Any, hidden: torch.Tensor, targets: torch.Tensor, held: HeldBack | None = None) -> torch.Tensor:
    """Summed cross-entropy of the output head's logits (with `held`, plus its hinge penalty); a plain linear head
    runs chunk by chunk to bound memory."""
    if type(head) is torch.nn.Linear and head.bias is None:
        return chunked_cross_entropy_sum(hidden, head.weight, targets, held)
    log_probs = torch.log_softmax(head(hidden).float(), dim=-1)  # adapted or quantized heads
    total = F.nll_loss(log_probs, targets, reduction="sum")
    return total if held is None else total + over_caps(log_probs, held, 0)[0]


def selective_causal_lm_loss(
    model: Any, inputs: dict[str, torch.Tensor], num_items_in_batch: Any = None, restraint: Any = None
) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions, or their sum divided by `num_items_in_batch`
    (with a `restraint` and replayed rows' reference log-probabilities in the batch, plus its hinge penalty).

    `model` may be wrapped for data parallelism (DDP): the forward goes through the wrapper, which
    synchronises gradients. The model runs without its output head (train/hidden_states.py); the final
    normalised hidden states then go through the head at labelled positions only, a chunk of positions at a time.
    """
    from accelerate.utils import extract_model_from_parallel

    labels, references = inputs["labels"], inputs.get(REFERENCE_LOGPS)
    model_inputs = {key: value for key, value in inputs.items() if key not in ("labels", REFERENCE_LOGPS)}
    unwrapped = extract_model_from_parallel(model)  # under DDP: the forward runs wrapped, config and head live inside
    if not has_plain_head(unwrapped):
        outputs = model(**model_inputs, labels=labels, num_items_in_batch=num_items_in_batch, use_cache=False)
        return outputs.loss
    # No cache: training never reuses one, and a cache switches off packed-row (position_ids) masking.
    hidden = final_hidden_states(model, **model_inputs)
    if hidden.shape[1] != labels.shape[1]:  # prefix tuning prepends virtual tokens to the states
        hidden = hidden[:, -labels.shape[1] :]
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    restrained = restraint is not None and references is not None and references.shape[-1] > 0  # width 0: none held here
    held = restraint.held_back(references[:, 1:][keep]) if restrained else None
    total = head_cross_entropy_sum(unwrapped.get_output_embeddings(), hidden[:, :-1][keep], targets[keep], held)
    if num_items_in_batch is None:
        return total / keep.sum().clamp(min=1)
    return total / torch.as_tensor(num_items_in_batch, device=total.device)

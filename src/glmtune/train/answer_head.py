"""The output head at answer tokens only, in the shape TRL's fused head returns.

TRL's fused head (trl.trainer.utils.add_fused_lm_head) projects every position of a padded batch
to the vocabulary on devices without Triton, prompt and padding included. In GRPO on a CPU, where
a group of 16 rows holds 40-token prompts and answers of a few tokens, that projection and its
backward took nearly half of each step. Here only the hidden states that predict a labelled token
go through the head, and the results are scattered back into TRL's [rows, length - 1] layout, zero
elsewhere, as TRL's own output is. Where the model attends by segment, the backbone also runs each
distinct prompt once (train/answer_layout.py): DPO's chosen and rejected answers, GRPO's group.
"""

from typing import Any

import torch

from glmtune.data.schema import IGNORE_INDEX
from glmtune.model.segment_attention import attends_by_segment
from glmtune.train.answer_layout import packed_layout
from glmtune.train.chunked_head import ChunkedTokenLogProbs
from glmtune.train.hidden_states import final_hidden_states
from glmtune.train.loss import has_plain_head

FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")  # TRL's per-token outputs, in order
FROZEN_HEAD_OUTPUTS = ("log_probs", "entropy", "mean_logits", "is_top1")  # what ChunkedTokenLogProbs computes
VOCAB_CHUNK = 32768  # vocabulary columns per tile of TRL's kernel (its own default)


def head_token_fields(head: Any, states: torch.Tensor, targets: torch.Tensor, outputs: tuple[str, ...], temperature: float = 1.0) -> dict[str, Any]:
    """TRL's per-token fields for hidden `states` [tokens, dim] predicting `targets` [tokens], logits divided by
    `temperature`: a frozen bias-free head in one pass over the vocabulary (forward and backward together), else
    TRL's kernel."""
    from trl.kernels import ChunkedLogProbFunction

    if head.weight.requires_grad or head.bias is not None or not set(outputs) <= set(FROZEN_HEAD_OUTPUTS):
        per_token = ChunkedLogProbFunction.apply(states, head.weight, head.bias, targets, temperature, VOCAB_CHUNK, None, 1.0, outputs)
        return dict(zip(FIELDS, per_token, strict=True))
    statistics = len(outputs) > 1
    scaled = states if temperature == 1.0 else states / temperature  # (h / t) @ W.T is the logits divided by t
    log_probs, entropy, mean_logits, is_top1 = ChunkedTokenLogProbs.apply(scaled, head.weight, targets, statistics)
    if not statistics:
        return {"log_probs": log_probs}
    return {"log_probs": log_probs, "entropy": entropy, "mean_logits": mean_logits, "is_top1": is_top1}


def fused_output(fields: dict[str, Any], where: tuple[torch.Tensor, torch.Tensor], label_mask: torch.Tensor) -> Any:
    """TRL's FusedCausalLMOutput with each field's per-token values put at `where` in a zero [rows, length - 1]
    tensor; the loss is the mean negative log-probability of the labelled tokens, as TRL's is."""
    from trl.trainer.utils import FusedCausalLMOutput

    padded = {
        name: None if fields.get(name) is None else fields[name].new_zeros(label_mask.shape).index_put(where, fields[name])
        for name in FIELDS
    }
    loss = -padded["log_probs"].sum() / label_mask.sum().clamp(min=1)
    return FusedCausalLMOutput(loss=loss, label_mask=label_mask, **padded)


def answers_only_applies(model: Any) -> bool:
    """True where the head's logits are the plain product TRL's fused head computes (no soft-capping or scaling)."""
    return has_plain_head(model) and type(model.get_output_embeddings()) is torch.nn.Linear


class AnswerHeadModel:
    """Stands in for a model in a TRL trainer's log-probability pass. Its fused-head calls run the head at
    labelled positions only, on rows packed with each prompt once (train/answer_layout.py) when the model
    attends by segment, else on the padded rows; other calls go to the model."""

    def __init__(self, model: Any, temperature: float, outputs: tuple[str, ...]) -> None:
        from accelerate.utils import extract_model_from_parallel

        unwrapped = extract_model_from_parallel(model)  # a DDP wrapper runs the forward; the model answers the rest
        self.model, self.head, self.temperature, self.outputs = model, unwrapped.get_output_embeddings(), temperature, outputs
        self.packs = attends_by_segment(unwrapped)
        self.last: Any = None  # the output of the last fused-head call

    def __call__(self, *, fused_lm_head: bool = False, **kwargs: Any) -> Any:
        if not fused_lm_head:
            return self.model(**kwargs)
        labels = kwargs.pop("labels")
        kwargs.pop("use_cache", None)  # no cache: training never reuses one
        self.last = (self.packed(kwargs, labels) if self.packs else None) or self.padded(kwargs, labels)
        return self.last

    def packed(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> Any:
        """The output from one packed forward; None when the rows are not prompt + answer."""
        layout = packed_layout(inputs["input_ids"].cpu(), inputs["attention_mask"].cpu(), labels.cpu())
        if layout is None:
            return None
        device = inputs["input_ids"].device
        hidden = final_hidden_states(
            self.model, input_ids=layout.input_ids.to(device), position_ids=layout.position_ids.to(device),
            cu_seq_lens_q=layout.boundaries.to(device), segment_prefixes=layout.prefixes,
        )[0]  # fmt: skip
        fields = head_token_fields(self.head, hidden[layout.sources.to(device)], layout.targets.to(device), self.outputs, self.temperature)
        return fused_output(fields, (layout.rows.to(device), layout.columns.to(device)), labels[:, 1:] != IGNORE_INDEX)

    def padded(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> Any:
        hidden = final_hidden_states(self.model, **inputs)
        targets = labels[:, 1:].to(hidden.device)
        label_mask = targets != IGNORE_INDEX
        where = label_mask.nonzero(as_tuple=True)
        fields = head_token_fields(self.head, hidden[:, :-1][where], targets[where], self.outputs, self.temperature)
        return fused_output(fields, where, label_mask)

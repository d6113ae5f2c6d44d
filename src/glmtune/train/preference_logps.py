"""DPO's log-probabilities from packed pairs: each prompt run once, no padding, the head only at answer tokens.

TRL's DPOTrainer runs prompt + chosen and prompt + rejected as two padded rows each, for the policy
and again for the reference, and on a CPU projects every position to the vocabulary. Here a
batch's pairs are packed into one padding-free sequence in which each prompt runs once: the rejected
answer attends to the chosen row's prompt as its prefix (train/answer_layout.py), and only the answer
tokens' hidden states go through the output head (train/answer_head.py). The results are scattered
back into TRL's padded [rows, positions] layout, so DPOTrainer's own losses (sigmoid, ipo, hinge,
sft) and metrics read them unchanged. A batch longer than the token budget runs as several
micro-batches of whole pairs; each loss is weighed by its share of the pairs (the sft term by its
share of the chosen tokens), so the gradients add up to the batch's.
"""

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from glmtune.data.packing import best_fit_decreasing
from glmtune.data.schema import IGNORE_INDEX
from glmtune.model.segment_attention import attends_by_segment
from glmtune.train.answer_head import AnswerHeadModel, answers_only_applies

POLICY_OUTPUTS = ("log_probs", "entropy", "mean_logits", "is_top1")  # what DPOTrainer logs from the policy pass


def packs_pairs(model: Any, ref_model: Any = None) -> bool:
    """True when the packed path computes what DPOTrainer's does: per-row attention is on and the output head is
    a plain linear layer, for the policy and a separate reference alike."""
    for candidate in [model] if ref_model is None else [model, ref_model]:
        if not attends_by_segment(candidate) or not answers_only_applies(candidate):
            return False
    return True


def pair_lengths(inputs: dict[str, torch.Tensor]) -> list[int]:
    """Packed tokens of each pair: chosen row plus the rejected row's answer (its prompt is shared)."""
    chosen, rejected = inputs["attention_mask"].sum(dim=1).chunk(2)
    rejected_prompt = (inputs["completion_mask"].cumsum(dim=1) == 0).sum(dim=1).chunk(2)[1]
    return (chosen + rejected - torch.minimum(rejected_prompt, rejected)).tolist()


def select_pairs(inputs: dict[str, torch.Tensor], pairs: list[int]) -> dict[str, torch.Tensor]:
    """The batch's rows of these pairs (chosen and rejected), trimmed to their longest row."""
    count = inputs["input_ids"].shape[0] // 2
    index = torch.tensor(pairs)
    rows = torch.cat([index, index + count]).to(inputs["input_ids"].device)
    width = int(inputs["attention_mask"][rows].sum(dim=1).max())
    selected = {}
    for name, values in inputs.items():
        values = values[rows] if values.shape[0] == 2 * count else values[index.to(values.device)]
        selected[name] = values[:, :width] if values.dim() == 2 else values
    return selected


def packed_pairs_trainer(trainer_class: type) -> type:
    """DPOTrainer (or a subclass) whose log-probabilities, policy and reference, come from packed pairs."""
    from trl.trainer.utils import use_adapter

    class PackedPairsTrainer(trainer_class):
        def __init__(self, *args: Any, micro_batch_tokens: int = 0, **kwargs: Any) -> None:
            """micro_batch_tokens: packed tokens per micro-batch (0: the whole batch in one)."""
            super().__init__(*args, **kwargs)
            self.micro_batch_tokens = micro_batch_tokens
            # length-weighted references (ld_alpha) and router losses need what the packed path leaves out
            plain = self.ld_alpha is None and not self.aux_loss_enabled
            self.packs_pairs = plain and packs_pairs(self.model, self.ref_model)
            self.pair_share = self.chosen_share = 1.0  # this micro-batch's part of the batch's pairs, chosen tokens
            self.policy_outputs = POLICY_OUTPUTS + (("log_sum_sq_probs",) if self.use_weighting else ())
            if self.packs_pairs:
                # Batches carry their reference log-probabilities from here on (computed below when missing), which
                # is how DPOTrainer reads precomputed ones.
                self.precompute_ref_logps = True

        @contextmanager
        def reference_weights(self) -> Iterator[Any]:
            """The reference model: the separate copy, else the policy with its adapter off (or its "ref" adapter)."""
            if self.ref_model is not None:
                yield self.ref_model
                return
            model = self.accelerator.unwrap_model(self.model)
            with use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None):
                yield model

        def reference_logps(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            from trl.models.utils import disable_gradient_checkpointing

            labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, IGNORE_INDEX)
            model_inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
            with (
                torch.no_grad(),
                disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
                self.reference_weights() as reference,
                self.accelerator.autocast(),
            ):
                outputs = AnswerHeadModel(reference, 1.0, ("log_probs",))(**model_inputs, labels=labels, fused_lm_head=True)
            chosen, rejected = outputs.log_probs.sum(dim=1).chunk(2)
            return {"ref_chosen_logps": chosen, "ref_rejected_logps": rejected}

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
            if not self.packs_pairs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if "ref_chosen_logps" not in inputs:
                inputs = {**inputs, **self.reference_logps(inputs)}
            if return_outputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            policy = AnswerHeadModel(model, 1.0, self.policy_outputs)
            with self.accelerator.autocast():  # as the reference's: the output head computes as the model does
                loss = super().compute_loss(policy, inputs, return_outputs, num_items_in_batch) * self.pair_share
            if "sft" in self.loss_types and self.chosen_share != self.pair_share and policy.last is not None:
                # DPOTrainer's sft term is a mean over the chosen tokens: reweigh it by their share, not the pairs'
                chosen_mask = inputs["completion_mask"][:, 1:].chunk(2)[0].bool()
                sft = -policy.last.log_probs.chunk(2)[0][chosen_mask].mean()
                loss = loss + self.loss_weights[self.loss_types.index("sft")] * sft * (self.chosen_share - self.pair_share)
            return loss

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            """One optimizer step; a batch longer than micro_batch_tokens runs as micro-batches of whole pairs."""
            groups = self.pair_groups(inputs)
            if len(groups) == 1:
                return super().training_step(model, inputs, num_items_in_batch)
            losses = []
            chosen_tokens = inputs["completion_mask"][:, 1:].chunk(2)[0].sum(dim=1)
            try:
                for index, pairs in enumerate(groups):
                    self.pair_share = len(pairs) / (inputs["input_ids"].shape[0] // 2)
                    self.chosen_share = float(chosen_tokens[pairs].sum() / chosen_tokens.sum().clamp(min=1))
                    with nullcontext() if index == len(groups) - 1 else self.accelerator.no_sync(model):
                        losses.append(super().training_step(model, select_pairs(inputs, pairs), num_items_in_batch))
            finally:
                self.pair_share = self.chosen_share = 1.0
            return torch.stack(losses).sum()

        def pair_groups(self, inputs: dict[str, Any]) -> list[list[int]]:
            """Pair indices per micro-batch: all in one unless the packed batch is over the token budget. With several
            processes always all in one: DPOTrainer gathers its metrics from every process in each loss call, so all
            of them must make the same number of calls with the same number of pairs."""
            count = inputs["input_ids"].shape[0] // 2
            if not (self.packs_pairs and self.micro_batch_tokens) or self.accelerator.num_processes > 1:
                return [list(range(count))]
            lengths = pair_lengths(inputs)
            if sum(lengths) <= self.micro_batch_tokens:
                return [list(range(count))]
            return best_fit_decreasing(lengths, self.micro_batch_tokens)

    PackedPairsTrainer.__name__ = f"PackedPairs{trainer_class.__name__}"
    return PackedPairsTrainer

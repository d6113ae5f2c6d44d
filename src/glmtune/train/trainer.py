"""The one Trainer every supervised stage uses: HF's Seq2SeqTrainer with a cheaper loss."""

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import torch
from torch.utils.data import Sampler
from transformers import Seq2SeqTrainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from glmtune.data.pipeline import RotatingRows
from glmtune.data.schema import IGNORE_INDEX, REFERENCE_LOGPS
from glmtune.model.segment_attention import attends_by_segment
from glmtune.train.loss import selective_causal_lm_loss
from glmtune.train.micro_batches import split_into_micro_batches


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order that is a function of (seed, epoch) alone, so a resumed run sees the same batches.

    transformers' sampler shuffles from the global RNG at the start of each epoch; a run resumed
    in the middle of a later epoch cannot recreate that RNG state, so it would train on other batches.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate's data loader) before every epoch, resumed ones included."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


class RotatingSampler(Sampler[int]):
    """Another sampler's order, keeping the fixed rows and, of the rotating groups, the epoch's own one."""

    def __init__(self, inner: Any, total: int, rotating: RotatingRows) -> None:
        self.inner, self.rotating, self.epoch = inner, rotating, 0
        self.fixed = total - rotating.groups * rotating.size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return self.fixed + self.rotating.size

    def __iter__(self) -> Iterator[int]:
        start = self.fixed + (self.epoch % self.rotating.groups) * self.rotating.size
        return (index for index in self.inner if index < self.fixed or start <= index < start + self.rotating.size)


class GlmtuneTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer whose training loss projects to the vocabulary only at labelled positions,
    and which can run each batch as padding-free micro-batches (see micro_batches.py)."""

    def __init__(
        self,
        *args: Any,
        micro_batch_tokens: int = 0,
        packs_micro_batches: bool = False,
        rotating: RotatingRows | None = None,
        restraint: Any = None,
        **kwargs: Any,
    ) -> None:
        """micro_batch_tokens: token budget per micro-batch (0: whole padded batches); packs_micro_batches:
        several rows may share a micro-batch (the model reads sample boundaries from restarting positions);
        rotating: training rows that take turns by epoch (RotatingRows); restraint: new words held back on
        replayed rows (train/restraint.py)."""
        super().__init__(*args, **kwargs)
        self.rotating, self.restraint = rotating, restraint
        # The loss below is already divided by the label count of the whole accumulated batch.
        self.model_accepts_loss_kwargs = True
        self.micro_batch_tokens = micro_batch_tokens
        self.packs_micro_batches = packs_micro_batches

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        """One optimizer step's forward and backward; with a token budget, one micro-batch at a time.

        Gradients are synchronised across devices once per optimizer step: after the last micro-batch
        of the batch that ends the accumulation window. Within the window the Trainer already holds
        synchronisation off, and a nested no_sync would turn it back on when it exits (accelerate's
        FSDP2 no_sync does), so micro-batches add a no_sync of their own only in the window's last batch.
        """
        if not self.micro_batch_tokens:
            return super().training_step(model, inputs, num_items_in_batch)
        share_prefix = self.packs_micro_batches and attends_by_segment(self.model)
        micro_batches = split_into_micro_batches(inputs, self.micro_batch_tokens, self.packs_micro_batches, share_prefix)
        if num_items_in_batch is None:
            num_items_in_batch = int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum())
        losses = []
        for index, micro_batch in enumerate(micro_batches):
            own_no_sync = index < len(micro_batches) - 1 and not self.trainer_holds_sync_off()
            with self.accelerator.no_sync(model) if own_no_sync else nullcontext():
                losses.append(super().training_step(model, micro_batch, num_items_in_batch))
        return torch.stack(losses).sum()

    def trainer_holds_sync_off(self) -> bool:
        """True while the Trainer runs this batch under its own no_sync (transformers' _run_epoch rule:
        every batch of an accumulation window but the last, unless it syncs each batch or runs DeepSpeed)."""
        from accelerate.utils import DistributedType

        gradient_state = self.accelerator.gradient_state
        return not (
            gradient_state.sync_gradients
            or gradient_state.plugin_kwargs.get("sync_each_batch", False)
            or self.accelerator.distributed_type == DistributedType.DEEPSPEED
        )

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """transformers' sampler, with length grouping made resumable (see EpochSeededLengthGroupedSampler) and
        rotating rows taking turns."""
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            sampler = EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
        if self.rotating is None or sampler is None:
            return sampler
        return RotatingSampler(sampler, len(train_dataset if train_dataset is not None else self.train_dataset), self.rotating)

    def num_examples(self, dataloader: Any) -> int:
        """Rows an epoch trains on: with rotating rows, one group of them (the Trainer's samples/s and epoch count)."""
        rows = super().num_examples(dataloader)
        if self.rotating is None or getattr(dataloader, "dataset", None) is not self.train_dataset:
            return rows
        return rows - (self.rotating.groups - 1) * self.rotating.size

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if return_outputs:  # evaluation wants logits too: the model's own forward gives them
            return super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if self.is_fsdp_enabled:  # sharded weights are whole only inside the model's forward: its own loss
            model_inputs = {key: value for key, value in inputs.items() if key != REFERENCE_LOGPS}
            return super().compute_loss(model, model_inputs, num_items_in_batch=num_items_in_batch)
        with self.accelerator.autocast():  # the output head outside the model's forward computes as the model does
            loss = selective_causal_lm_loss(model, inputs, num_items_in_batch, self.restraint)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch counts every device's labels and gradients are averaged over
            # devices, so each device's share is scaled back up (as transformers' own compute_loss does)
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return loss

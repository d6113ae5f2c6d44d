"""What the preference stages (dpo, kto) share: TRL trainers reading glmtune's encoded samples, and a reference.

glmtune encodes samples with its own templates (exact special tokens, truncation counted), so the
TRL trainers' text tokenization is skipped; an adapter method's reference is the starting adapter
kept frozen by TRL (a fresh LoRA's is the base model: one base model in memory), while full and
freeze tuning need a frozen copy of the starting weights.
"""

from collections.abc import Callable
from typing import Any

from glmtune.hparams.entry import TrainArgs
from glmtune.methods import get_method
from glmtune.model.loader import load_model


def reference_model(args: TrainArgs) -> Any:
    """None where TRL derives the reference from the adapter, else a frozen copy of the starting model."""
    return None if get_method(args.finetuning.finetuning_type).adapter else load_model(args.model)


def pretokenized(trainer_class: type, finish: Callable[[Any, Any, Any], Any] | None = None) -> type:
    """`trainer_class` reading glmtune's encoded columns as they are; `finish(trainer, dataset, args)` may add columns
    the trainer derives from token ids (KTO's mismatched completions)."""

    class PretokenizedTrainer(trainer_class):
        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            return dataset if finish is None else finish(self, dataset, args)

    PretokenizedTrainer.__name__ = f"Pretokenized{trainer_class.__name__}"
    return PretokenizedTrainer

"""What the preference stages (dpo, kto) share: TRL trainers reading glmtune's encoded samples, and a reference.

glmtune encodes samples with its own templates (exact special tokens, truncation counted), so the
TRL trainers' text tokenization is skipped; an adapter method's reference is the starting adapter
kept frozen by TRL (a fresh LoRA's is the base model: one base model in memory), while full and
freeze tuning need a frozen copy of the starting weights.
"""

from collections.abc import Callable
from typing import Any

from glmtune.data.schema import IGNORE_INDEX
from glmtune.hparams.entry import TrainArgs
from glmtune.methods import get_method
from glmtune.model.loader import frozen_copy_settings, load_model


def reference_model(args: TrainArgs) -> Any:
    """None where TRL derives the reference from the adapter, else a frozen copy of the starting model."""
    return None if get_method(args.finetuning.finetuning_type).adapter else load_model(frozen_copy_settings(args.model))


def pretokenized(trainer_class: type, finish: Callable[[Any, Any, Any], Any] | None = None) -> type:
    """`trainer_class` reading glmtune's encoded columns as they are; `finish(trainer, dataset, args)` may add columns
    the trainer derives from token ids (KTO's mismatched completions)."""

    class PretokenizedTrainer(trainer_class):
        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            return dataset if finish is None else finish(self, dataset, args)

    PretokenizedTrainer.__name__ = f"Pretokenized{trainer_class.__name__}"
    return PretokenizedTrainer


def legacy_pair_columns(feature: dict[str, Any]) -> dict[str, list[int]]:
    """glmtune's prompt/chosen/rejected ids in the columns of TRL's older preference trainers (CPO, ORPO)."""
    prompt = feature["prompt_ids"]
    row = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        answer = feature[f"{side}_ids"]
        row[f"{side}_input_ids"] = prompt + answer
        row[f"{side}_attention_mask"] = [1] * (len(prompt) + len(answer))
        row[f"{side}_labels"] = [IGNORE_INDEX] * len(prompt) + answer  # loss and log-probabilities on the answer only
    return row


def pretokenized_rows(trainer_class: type) -> type:
    """An older TRL preference trainer (CPO, ORPO) reading glmtune's encoded pairs instead of tokenizing text."""

    class PretokenizedTrainer(trainer_class):
        def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, list[int]]:
            return legacy_pair_columns(feature)

    PretokenizedTrainer.__name__ = f"Pretokenized{trainer_class.__name__}"
    return PretokenizedTrainer

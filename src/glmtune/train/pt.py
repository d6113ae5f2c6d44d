"""Pre-training (continued): next-token loss on plain text packed into cutoff_len blocks."""

from typing import Any

from glmtune.train.sft import run_sft


def run_pt(model_args: Any, data_args: Any, training_args: Any, finetuning_args: Any) -> dict[str, Any]:
    """Same pipeline as sft; the pt stage's preprocessing packs text and labels every token."""
    return run_sft(model_args, data_args, training_args, finetuning_args, stage="pt")

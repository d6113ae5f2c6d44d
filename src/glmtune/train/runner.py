"""`glmtune train`: parse and validate settings, then run the stage's function."""

import logging
from collections.abc import Callable, Sequence
from typing import Any

from glmtune.errors import ConfigError

logger = logging.getLogger(__name__)


def stage_functions() -> dict[str, Callable[..., dict[str, Any]]]:
    from glmtune.train.pt import run_pt
    from glmtune.train.sft import run_sft

    return {"sft": run_sft, "pt": run_pt}


def main(argv: Sequence[str]) -> int:
    """Parse and check, save the resolved config, seed every RNG, then run the stage.

    Seeding happens here, before any model is built: the Trainer seeds only when it is
    constructed, after fresh LoRA or prefix weights were already drawn, so two runs with the
    same seed would otherwise start from different adapters.
    """
    from transformers import set_seed

    from glmtune.hparams.entry import get_train_args
    from glmtune.train.checkpoints import resolve_resume
    from glmtune.train.session import write_resolved_config

    model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(argv)
    stages = stage_functions()
    if finetuning_args.stage not in stages:
        raise ConfigError(f"stage={finetuning_args.stage} is not available yet; available: {', '.join(stages)}")
    resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)  # a bad path fails before any loading
    write_resolved_config(training_args.output_dir, model_args, data_args, training_args, finetuning_args, generating_args)
    set_seed(training_args.seed)
    stages[finetuning_args.stage](model_args, data_args, training_args, finetuning_args)
    return 0

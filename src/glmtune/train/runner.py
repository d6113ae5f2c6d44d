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
    from glmtune.hparams.entry import get_train_args
    from glmtune.train.session import write_resolved_config

    model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(argv)
    stages = stage_functions()
    if finetuning_args.stage not in stages:
        raise ConfigError(f"stage={finetuning_args.stage} is not available yet; available: {', '.join(stages)}")
    write_resolved_config(training_args.output_dir, model_args, data_args, training_args, finetuning_args, generating_args)
    stages[finetuning_args.stage](model_args, data_args, training_args, finetuning_args)
    return 0

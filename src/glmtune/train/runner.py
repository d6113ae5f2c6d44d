"""`glmtune train`: parse and validate settings, then run the stage's function."""

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from glmtune.errors import ConfigError

logger = logging.getLogger(__name__)


def stage_functions(generating_args: Any) -> dict[str, Callable[..., dict[str, Any]]]:
    """Stage name -> function(model_args, data_args, training_args, finetuning_args); sft also predicts after training."""
    from glmtune.train.pt import run_pt
    from glmtune.train.sft import run_sft

    return {"sft": partial(run_sft, generating_args=generating_args), "pt": run_pt}


def main(argv: Sequence[str]) -> int:
    """Parse and check, save the resolved config, seed every RNG, then run the stage.

    Seeding happens here, before any model is built: the Trainer seeds only when it is
    constructed, after fresh LoRA or prefix weights were already drawn, so two runs with the
    same seed would otherwise start from different adapters.
    """
    from transformers import set_seed

    from glmtune.eval.metrics import check_metrics_installed
    from glmtune.hparams.entry import get_train_args
    from glmtune.train.checkpoints import resolve_resume
    from glmtune.train.sft import generates_after_training
    from glmtune.train.session import write_resolved_config

    model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(argv)
    if not training_args.do_train:
        return predict_only(model_args, data_args, training_args, generating_args)
    if generates_after_training(training_args):
        check_metrics_installed()  # before hours of training, not after
    stages = stage_functions(generating_args)
    if finetuning_args.stage not in stages:
        raise ConfigError(f"stage={finetuning_args.stage} is not available yet; available: {', '.join(stages)}")
    resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)  # a bad path fails before any loading
    write_resolved_config(training_args.output_dir, model_args, data_args, training_args, finetuning_args, generating_args)
    set_seed(training_args.seed)
    stages[finetuning_args.stage](model_args, data_args, training_args, finetuning_args)
    return 0


def predict_only(model_args: Any, data_args: Any, training_args: Any, generating_args: Any) -> int:
    """`glmtune train --do_train false --do_predict --predict_with_generate`, as ChatGLM Efficient Tuning ran evaluation."""
    from transformers import set_seed

    from glmtune.eval.runner import run_eval
    from glmtune.train.sft import generates_after_training

    if not generates_after_training(training_args):
        raise ConfigError("do_train=false leaves nothing to do: add do_predict and predict_with_generate, or use `glmtune eval`")
    set_seed(training_args.seed)
    run_eval(model_args, data_args, training_args, generating_args)
    return 0

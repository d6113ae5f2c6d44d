"""`glmtune train`: parse and validate settings, then run the stage's recipe from the stage registry."""

import logging
from collections.abc import Sequence

from glmtune.errors import ConfigError
from glmtune.hparams.entry import TrainArgs


def main(argv: Sequence[str]) -> int:
    """Parse and check, save the resolved config, seed every RNG, then run the stage.

    Seeding happens here, before any model is built: the Trainer seeds only when it is
    constructed, after fresh LoRA or prefix weights were already drawn, so two runs with the
    same seed would otherwise start from different adapters.
    """
    from transformers import set_seed

    from glmtune.eval.metrics import check_metrics_installed
    from glmtune.hparams.entry import write_train_config
    from glmtune.hparams.validation import predicts_after_training
    from glmtune.stages import get_stage
    from glmtune.train.checkpoints import resolve_resume
    from glmtune.train.dataset_defaults import train_args_with_dataset_defaults

    args = train_args_with_dataset_defaults(argv)
    if not args.training.do_train:
        return predict_only(args)
    if predicts_after_training(args.training):
        check_metrics_installed()  # before hours of training, not after
    resolve_resume(args.training.resume_from_checkpoint, args.training.output_dir)  # a bad path fails before loading
    if args.training.process_index == 0:
        write_train_config(args)
    else:  # under torchrun every process runs this; the first one speaks for all
        logging.getLogger("glmtune").setLevel(logging.WARNING)
    set_seed(args.training.seed)
    stage = get_stage(args.finetuning.stage)
    stage.load_recipe()(stage, args)
    return 0


def predict_only(args: TrainArgs) -> int:
    """`glmtune train --do_train false --do_predict --predict_with_generate`, as ChatGLM Efficient Tuning ran evaluation."""
    from transformers import set_seed

    from glmtune.eval.runner import run_eval
    from glmtune.hparams.validation import predicts_after_training

    if not predicts_after_training(args.training):
        raise ConfigError("do_train=false leaves nothing to do: add do_predict and predict_with_generate, or use `glmtune eval`")
    set_seed(args.training.seed)
    run_eval(args.model, args.data, args.training, args.generating)
    return 0

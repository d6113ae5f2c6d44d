"""What every stage shares: the trainer set-up, training with resume, and saving the results."""

import dataclasses
import logging
from typing import Any

from glmtune.data.pipeline import TokenizedData, build_tokenized_data
from glmtune.data.templates import get_template
from glmtune.data.tokenizer import load_tokenizer
from glmtune.hparams.entry import TrainArgs
from glmtune.model.finetuning import prepare_for_training, upcast_trainable
from glmtune.model.loader import load_model
from glmtune.stages import Stage
from glmtune.train.callbacks import (
    CompleteCheckpointMarker,
    MetricsLogger,
    summary_line,
    whole_run_loss,
)
from glmtune.train.checkpoints import resolve_resume
from glmtune.train.estimate_inputs import estimated_peak_metrics
from glmtune.train.graceful_stop import GracefulStop
from glmtune.train.plot import plot_loss
from glmtune.train.trainer import GlmtuneTrainer

logger = logging.getLogger(__name__)


def tokenizer_data_model(stage: Stage, args: TrainArgs) -> tuple[Any, TokenizedData, Any]:
    """What every recipe starts from: the tokenizer, the stage's encoded data (bad data fails before any model
    loads), and the model with the stage's head, made trainable by the chosen method."""
    tokenizer = load_tokenizer(args.model)
    # Under torchrun the first process encodes and caches the data; the others then read its cache.
    with args.training.main_process_first(desc="encoding the data"):
        data = build_tokenized_data(args.data, stage, get_template(args.data.template), tokenizer, args.training.seed)
    model = prepare_for_training(load_model(args.model, for_training=True, head=stage.head), args.model, args.finetuning)
    return tokenizer, data, model


def glmtune_callbacks() -> list[Any]:
    """What every stage's trainer reports and guarantees: metrics.jsonl, complete-checkpoint markers, graceful stop."""
    return [MetricsLogger(), CompleteCheckpointMarker(), GracefulStop()]


def trl_config(config_class: type, training_args: Any, **overrides: Any) -> Any:
    """The parsed training settings as a TRL trainer's config (a TrainingArguments subclass with fields of its own).

    Every TrainingArguments field is carried over, so TRL's own defaults for them (which differ from
    transformers') never apply silently; its extra fields keep their defaults unless overridden.
    """
    from transformers import TrainingArguments

    values = {f.name: getattr(training_args, f.name) for f in dataclasses.fields(TrainingArguments) if f.init}
    return config_class(**{**values, **overrides})


def build_trl_trainer(trainer_class: type, model: Any, **options: Any) -> Any:
    """A TRL trainer with glmtune's callbacks, its trainable weights kept in fp32.

    TRL casts a quantized model's trainable weights to bf16 (after the QLoRA paper); glmtune keeps
    trainable weights and optimizer state in fp32 in every run, which also keeps a reward model's
    new score head in the dtype of the hidden states it reads.
    """
    trainer = trainer_class(model=model, callbacks=glmtune_callbacks(), **options)
    upcast_trainable(trainer.model)
    return trainer


def build_trainer(
    model: Any,
    tokenizer: Any,
    training_args: Any,
    data: TokenizedData,
    collator: Any,
    micro_batch_tokens: int,
    packs_rows: bool,
) -> GlmtuneTrainer:
    """The causal-LM trainer, with glmtune's callbacks."""
    return GlmtuneTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=glmtune_callbacks(),
        micro_batch_tokens=micro_batch_tokens,
        packs_micro_batches=packs_rows,
        rotating=data.rotating,
        restraint=data.restraint,
    )


def train_and_save(trainer: GlmtuneTrainer, plot: bool) -> dict[str, Any]:
    """Train (resuming if asked), save weights, tokenizer and state, then report one summary line."""
    args = trainer.args
    resume = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    if resume:
        logger.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.save_state()
    metrics = dict(result.metrics)
    metrics_logger = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, MetricsLogger))
    if "train_loss" in metrics:  # the whole run's, also after a resume
        state = trainer.state
        start = metrics_logger.start_step
        metrics["train_loss"] = whole_run_loss(metrics["train_loss"], start, state.global_step, state.log_history)
    # train_runtime covers this session only, so the rate counts only this session's tokens
    metrics["effective_tokens"] = trainer.state.num_input_tokens_seen - metrics_logger.start_tokens
    metrics.update(estimated_peak_metrics(trainer))
    if trainer.eval_dataset is not None:
        metrics.update(trainer.evaluate())
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    if plot and trainer.is_world_process_zero():
        plot_loss(args.output_dir)
    if trainer.is_world_process_zero():  # the token counts are already summed over every process
        print(summary_line(metrics, metrics["effective_tokens"]), flush=True)
    return metrics

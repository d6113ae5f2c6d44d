"""Supervised fine-tuning: loss on assistant turns of chat data."""

from typing import Any

from glmtune.data.collators import SupervisedCollator
from glmtune.data.pipeline import build_tokenized_data
from glmtune.data.templates import get_template
from glmtune.errors import ConfigError
from glmtune.hparams.generating_args import GeneratingArguments
from glmtune.model.finetuning import prepare_for_training
from glmtune.model.loader import load_model, load_tokenizer
from glmtune.train.micro_batches import micro_batch_token_budget, supports_packed_rows
from glmtune.train.session import build_trainer, train_and_save


def generates_after_training(training_args: Any) -> bool:
    """ChatGLM Efficient Tuning's switch: do_predict, or do_eval, with predict_with_generate."""
    return bool(training_args.predict_with_generate and (training_args.do_predict or training_args.do_eval))


def run_sft(
    model_args: Any,
    data_args: Any,
    training_args: Any,
    finetuning_args: Any,
    stage: str = "sft",
    generating_args: GeneratingArguments | None = None,
) -> dict[str, Any]:
    tokenizer = load_tokenizer(model_args)
    data = build_tokenized_data(data_args, stage, get_template(data_args.template), tokenizer, training_args.seed)
    model = prepare_for_training(load_model(model_args, for_training=True), model_args, finetuning_args)
    if data_args.packing and not supports_packed_rows(model):
        raise ConfigError("packing needs a transformers model class without prefix tuning: set packing=false")
    collator = SupervisedCollator(tokenizer, pad_to_multiple_of=8)
    budget = micro_batch_token_budget(finetuning_args, data_args, training_args)
    trainer = build_trainer(model, tokenizer, training_args, data.train, data.validation, collator, budget)
    metrics = train_and_save(trainer, finetuning_args.plot_loss)
    if generates_after_training(training_args) and trainer.is_world_process_zero():
        from glmtune.eval.runner import predict_after_training

        predict_after_training(model, model_args, data_args, training_args, generating_args)
    return metrics

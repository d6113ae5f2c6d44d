"""The argument sets each command needs, parsed and validated in one call."""

from collections.abc import Sequence
from typing import Any

from glmtune.hparams.api_args import ApiArguments, check_api
from glmtune.hparams.data_args import DataArguments
from glmtune.hparams.export_args import ExportArguments
from glmtune.hparams.finetuning_args import FinetuningArguments
from glmtune.hparams.generating_args import GeneratingArguments
from glmtune.hparams.model_args import ModelArguments
from glmtune.hparams.parser import parse_dataclasses, peek_setting, settings_to_yaml
from glmtune.hparams.validation import (
    check_data,
    check_eval_command,
    check_evaluation,
    check_finetuning,
    check_generation,
    check_micro_batches,
    check_model,
    check_training,
    raise_if_problems,
)

# glmtune's defaults where transformers' suit a different job: they teach the default model
# a new identity in minutes on a 2-core CPU. Any setting given by the user wins.
TRAINING_DEFAULTS: dict[str, Any] = {
    "do_train": True,
    "output_dir": "outputs/run",
    "per_device_train_batch_size": 4,
    "num_train_epochs": 3.0,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05,
    "logging_steps": 5,
    "save_steps": 100,
    "save_total_limit": 3,
    "train_sampling_strategy": "group_by_length",
    "remove_unused_columns": False,
    "report_to": "none",
}
# `glmtune eval` parses the training settings too, so a training config evaluates as is;
# it never trains, predicts greedily (reproducible scores) and writes to its own folder.
EVAL_DEFAULTS: dict[str, Any] = {
    "do_train": False,
    "do_predict": True,
    "predict_with_generate": True,
    "output_dir": "outputs/eval",
    "per_device_eval_batch_size": 8,
    "do_sample": False,
    "report_to": "none",
}
LEARNING_RATES = {"lora": 5e-4, "p_tuning": 1e-2, "freeze": 5e-5, "full": 2e-5}

InferArgs = tuple[ModelArguments, DataArguments, GeneratingArguments]


def training_defaults(method: str) -> dict[str, Any]:
    """glmtune's training defaults for a fine-tuning method: TRAINING_DEFAULTS plus the method's learning rate."""
    import torch

    return {
        **TRAINING_DEFAULTS,
        "learning_rate": LEARNING_RATES.get(method, LEARNING_RATES["lora"]),
        "dataloader_pin_memory": torch.cuda.is_available(),  # pinning only helps copies to a GPU
    }


def train_settings_yaml(*arguments: Any) -> str:
    """The resolved training settings as YAML that `get_train_args([file])` parses back to the same values."""
    method = next(argument for argument in arguments if isinstance(argument, FinetuningArguments)).finetuning_type
    return settings_to_yaml(*arguments, training_defaults=training_defaults(method))


def get_infer_args(argv: Sequence[str]) -> InferArgs:
    """Arguments for chat, api, webui chat and export."""
    model_args, data_args, generating_args = parse_dataclasses(
        (ModelArguments, DataArguments, GeneratingArguments), argv
    )
    raise_if_problems(check_model(model_args) + check_generation(generating_args))
    return model_args, data_args, generating_args


def get_api_args(argv: Sequence[str]) -> tuple[ModelArguments, DataArguments, GeneratingArguments, ApiArguments]:
    """Arguments for `glmtune api`: what `chat` takes, plus where to listen and how much load to accept."""
    model_args, data_args, generating_args, api_args = parse_dataclasses(
        (ModelArguments, DataArguments, GeneratingArguments, ApiArguments), argv
    )
    raise_if_problems(check_model(model_args) + check_generation(generating_args) + check_api(api_args))
    return model_args, data_args, generating_args, api_args


def get_export_args(argv: Sequence[str]) -> tuple[ModelArguments, DataArguments, ExportArguments]:
    """Arguments for `glmtune export`: a base model, adapters to merge, and where to write."""
    model_args, data_args, export_args = parse_dataclasses((ModelArguments, DataArguments, ExportArguments), argv)
    problems = check_model(model_args)
    if not export_args.export_dir:
        problems.append("export needs --out DIR (export_dir)")
    if export_args.export_size <= 0:
        problems.append(f"export_size={export_args.export_size}: must be > 0 (GB per shard)")
    if model_args.quantization_bit is not None:
        problems.append("export merges into full-precision weights: drop quantization_bit")
    raise_if_problems(problems)
    return model_args, data_args, export_args


def get_train_args(argv: Sequence[str]) -> tuple[ModelArguments, DataArguments, Any, FinetuningArguments, GeneratingArguments]:
    """Arguments for `glmtune train` and `glmtune eval`; training arguments are HF's Seq2SeqTrainingArguments."""
    import torch
    from transformers import Seq2SeqTrainingArguments

    model_args, data_args, training_args, finetuning_args, generating_args = parse_dataclasses(
        (ModelArguments, DataArguments, Seq2SeqTrainingArguments, FinetuningArguments, GeneratingArguments),
        argv,
        training_defaults(peek_setting(argv, "finetuning_type") or "lora"),
    )
    if data_args.max_source_length and data_args.max_target_length:
        data_args.cutoff_len = data_args.max_source_length + data_args.max_target_length
    raise_if_problems(
        check_model(model_args)
        + check_data(data_args)
        + check_finetuning(model_args, finetuning_args)
        + check_training(training_args, data_args, torch.cuda.is_available())
        + check_micro_batches(training_args, finetuning_args)
        + check_evaluation(training_args, data_args, finetuning_args.stage)
        + check_generation(generating_args)
    )
    return model_args, data_args, training_args, finetuning_args, generating_args


def get_eval_args(argv: Sequence[str]) -> tuple[ModelArguments, DataArguments, Any, GeneratingArguments]:
    """Arguments for `glmtune eval`: the same settings as training (its config files carry over) with EVAL_DEFAULTS."""
    from transformers import Seq2SeqTrainingArguments

    model_args, data_args, training_args, _, generating_args = parse_dataclasses(
        (ModelArguments, DataArguments, Seq2SeqTrainingArguments, FinetuningArguments, GeneratingArguments),
        argv,
        EVAL_DEFAULTS,
    )
    raise_if_problems(
        check_model(model_args)
        + check_data(data_args)
        + check_eval_command(training_args, data_args)
        + check_generation(generating_args)
    )
    return model_args, data_args, training_args, generating_args

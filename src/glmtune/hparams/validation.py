"""Reject impossible combinations before any model loads, saying what to change.

Each check returns problems as strings; all problems are reported together so a user
fixes a config in one pass instead of one error per run.
"""

from pathlib import Path
from typing import Any

from glmtune.errors import ConfigError
from glmtune.hparams.data_args import DataArguments
from glmtune.hparams.finetuning_args import FinetuningArguments
from glmtune.hparams.generating_args import GeneratingArguments
from glmtune.hparams.model_args import ModelArguments
from glmtune.methods import METHODS
from glmtune.stages import CAUSAL_LM, STAGES, Stage


def check_model(model_args: ModelArguments) -> list[str]:
    problems = []
    if model_args.quantization_bit not in (None, 4, 8):
        problems.append(f"quantization_bit={model_args.quantization_bit}: use 4 or 8, or leave it empty")
    if model_args.threads is not None and model_args.threads < 1:
        problems.append(f"threads={model_args.threads}: must be at least 1, or leave it empty for torch's default")
    adapters = split_names(model_args.adapter_name_or_path)
    if model_args.adapter_name_or_path is not None and not adapters:
        problems.append("adapter_name_or_path is empty: give adapter directories, comma-separated")
    whole = Path(model_args.adapter_name_or_path or "").expanduser()
    if len(adapters) > 1 and whole.is_dir():
        problems.append(
            f"adapter_name_or_path={model_args.adapter_name_or_path}: a comma separates adapters, and this directory "
            "has one in its name; rename it (or link it) without the comma"
        )
    return problems


def check_generation(generating_args: GeneratingArguments) -> list[str]:
    """Checks the settings given; empty ones (None) are filled later from the model, then glmtune's defaults."""
    checks = (
        ("max_new_tokens", lambda value: value <= 0, "must be at least 1"),
        ("temperature", lambda value: value < 0, "must be >= 0 (0 decodes greedily)"),
        ("top_p", lambda value: not 0 < value <= 1, "must be in (0, 1]"),
        ("top_k", lambda value: value < 0, "must be >= 0 (0 disables it)"),
        ("repetition_penalty", lambda value: value <= 0, "must be > 0 (1.0 disables it)"),
        ("num_beams", lambda value: value < 1, "must be at least 1"),
    )
    return [
        f"{name}={getattr(generating_args, name)}: {rule}"
        for name, bad, rule in checks
        if getattr(generating_args, name) is not None and bad(getattr(generating_args, name))
    ]


def check_data(data_args: DataArguments) -> list[str]:
    problems = []
    if data_args.cutoff_len <= 0:
        problems.append(f"cutoff_len={data_args.cutoff_len}: must be at least 1")
    if data_args.val_size < 0 or (data_args.val_size >= 1 and not float(data_args.val_size).is_integer()):
        problems.append(f"val_size={data_args.val_size}: use a fraction in [0, 1) or a whole number of rows")
    if data_args.max_samples is not None and data_args.max_samples <= 0:
        problems.append(f"max_samples={data_args.max_samples}: must be at least 1, or leave it empty")
    if data_args.val_size and data_args.eval_dataset:
        problems.append("val_size and eval_dataset both ask for validation data: keep one")
    if data_args.streaming and 0 < data_args.val_size < 1:
        problems.append(f"val_size={data_args.val_size} with streaming: give a row count (the length is unknown)")
    if data_args.replay < 0:
        problems.append(f"replay={data_args.replay}: must be >= 0 (replay rows per training row)")
    if data_args.interleave_probs and data_args.mix_strategy == "concat":
        problems.append("interleave_probs needs mix_strategy=interleave_under or interleave_over")
    return problems


def check_finetuning(model_args: ModelArguments, finetuning_args: FinetuningArguments) -> list[str]:
    problems = []
    name = finetuning_args.finetuning_type
    method = METHODS[name]
    adapters = split_names(model_args.adapter_name_or_path)
    adapter_methods = " or ".join(known for known, record in METHODS.items() if record.adapter)
    if model_args.quantization_bit is not None and not method.adapter:
        problems.append(
            f"quantization_bit={model_args.quantization_bit} with finetuning_type={name}: quantized weights "
            f"cannot be updated; use finetuning_type={adapter_methods} (lora on quantized weights is QLoRA) "
            "or drop quantization_bit"
        )
    if adapters and not method.adapter:
        problems.append(
            f"adapter_name_or_path with finetuning_type={name}: adapters continue {adapter_methods}; "
            "merge them first with `glmtune export`"
        )
    stage = STAGES[finetuning_args.stage]
    if method.generating_only and stage.head != CAUSAL_LM:
        usable = " or ".join(known for known, record in METHODS.items() if not record.generating_only)
        problems.append(f"stage={stage.name} trains a scoring head, which finetuning_type={name} cannot: use {usable}")
    if method.adapter and not method.mergeable and len(adapters) > 1:
        problems.append(f"{name} adapters cannot be merged: give a single adapter_name_or_path")
    if finetuning_args.lora_rank <= 0:
        problems.append(f"lora_rank={finetuning_args.lora_rank}: must be at least 1")
    if not 0 <= finetuning_args.lora_dropout < 1:
        problems.append(f"lora_dropout={finetuning_args.lora_dropout}: must be in [0, 1)")
    if finetuning_args.pre_seq_len <= 0:
        problems.append(f"pre_seq_len={finetuning_args.pre_seq_len}: must be at least 1")
    if finetuning_args.num_layer_trainable == 0:
        problems.append("num_layer_trainable=0 trains nothing: use N > 0 (last N layers) or N < 0 (first N)")
    if finetuning_args.micro_batch_tokens is not None and finetuning_args.micro_batch_tokens < 0:
        problems.append(f"micro_batch_tokens={finetuning_args.micro_batch_tokens}: must be >= 0 (0 turns it off)")
    return problems


def check_micro_batches(training_args: Any, finetuning_args: FinetuningArguments) -> list[str]:
    """accelerate steps a DeepSpeed engine after every backward call, so a batch must run as one."""
    if training_args.deepspeed and finetuning_args.micro_batch_tokens:
        return [f"micro_batch_tokens={finetuning_args.micro_batch_tokens} with deepspeed: set micro_batch_tokens=0"]
    return []


def check_training(training_args: Any, data_args: DataArguments) -> list[str]:
    """--bf16/--fp16 are never a problem: a CPU runs them as it can (glmtune.precision)."""
    problems = []
    if training_args.fp16 and training_args.bf16:
        problems.append("fp16 and bf16 are both on: choose one")
    if training_args.do_train and not data_args.dataset:
        problems.append("do_train needs dataset (a name from dataset_info.json or a file path)")
    if (training_args.do_eval or training_args.do_predict) and not (data_args.dataset or data_args.eval_dataset):
        problems.append("do_eval/do_predict need dataset or eval_dataset")
    return problems


def predicts_after_training(training_args: Any) -> bool:
    """ChatGLM Efficient Tuning's switch for generating on held-out data: do_predict, or do_eval, with predict_with_generate."""
    return bool(training_args.predict_with_generate and (training_args.do_predict or training_args.do_eval))


def check_evaluation(training_args: Any, data_args: DataArguments, stage: Stage) -> list[str]:
    """Evaluation during and after training needs held-out data; predictions need generation and reference answers."""
    problems = []
    held_out = bool(data_args.val_size or data_args.eval_dataset)
    strategy = getattr(training_args.eval_strategy, "value", training_args.eval_strategy)
    if strategy != "no" and not held_out:
        problems.append(f"eval_strategy={strategy} evaluates on held-out data: set val_size (e.g. 0.1) or eval_dataset")
    if training_args.do_predict and not training_args.predict_with_generate:
        problems.append("do_predict writes generated predictions: add predict_with_generate")
    if training_args.predict_with_generate and not stage.predicts:
        predicting = ", ".join(name for name, record in STAGES.items() if record.predicts)
        problems.append(
            f"predict_with_generate needs a stage whose data has reference answers ({predicting}), not {stage.name}"
        )
    if training_args.do_train and predicts_after_training(training_args) and not held_out:
        problems.append("predicting after training needs held-out data: set val_size or eval_dataset")
    if training_args.per_device_eval_batch_size < 1:
        problems.append(f"per_device_eval_batch_size={training_args.per_device_eval_batch_size}: must be at least 1")
    return problems


def check_replay(data_args: DataArguments, stage: Stage) -> list[str]:
    """Replay adds conversations the starting model answered: only stages that learn answers take it."""
    if not data_args.replay or stage.replays:
        return []
    replaying = ", ".join(name for name, record in STAGES.items() if record.replays)
    return [f"replay={data_args.replay} mixes in answered conversations: it works with stage {replaying}, not {stage.name}"]


def check_eval_command(training_args: Any, data_args: DataArguments) -> list[str]:
    """`glmtune eval` predicts on dataset (its val_size split when given) or on eval_dataset."""
    problems = []
    if not (data_args.dataset or data_args.eval_dataset):
        problems.append("eval needs dataset (a name from dataset_info.json or a file path) or eval_dataset")
    if training_args.per_device_eval_batch_size < 1:
        problems.append(f"per_device_eval_batch_size={training_args.per_device_eval_batch_size}: must be at least 1")
    return problems


def split_names(value: str | None) -> list[str]:
    """Split a comma-separated setting, ignoring blanks."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def raise_if_problems(problems: list[str]) -> None:
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))

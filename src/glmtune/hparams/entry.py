"""The argument sets each command needs, parsed and validated in one call.

COMMAND_SETTINGS is the one list of which settings classes each command takes: parsing here
and `glmtune COMMAND --help` both read it.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmtune.hparams.api_args import ApiArguments, check_api
from glmtune.hparams.data_args import DataArguments
from glmtune.hparams.engines import check_deepspeed, check_fsdp
from glmtune.hparams.estimate_args import EstimateArguments
from glmtune.hparams.eval_args import TASK_DEFAULTS, EvalArguments
from glmtune.hparams.export_args import ExportArguments
from glmtune.hparams.finetuning_args import FinetuningArguments
from glmtune.hparams.generating_args import GeneratingArguments
from glmtune.hparams.inspect_args import InspectArguments
from glmtune.hparams.model_args import ModelArguments
from glmtune.hparams.parser import (
    is_true,
    parse_dataclasses,
    peek_settings,
    settings_to_yaml,
)
from glmtune.hparams.score_args import ScoreArguments
from glmtune.hparams.validation import (
    check_data,
    check_eval_command,
    check_evaluation,
    check_finetuning,
    check_generation,
    check_micro_batches,
    check_model,
    check_replay,
    check_training,
    raise_if_problems,
)
from glmtune.methods import METHODS
from glmtune.precision import apply_training_precision, default_device
from glmtune.stages import STAGES

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
# Resolved after parsing: the command line takes only true/false for this one ("all" or "no"),
# and the summary's effective tokens/s needs the non-padding count.
COUNTED_TOKENS = {"include_num_input_tokens_seen": "non_padding"}
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
# Stands for transformers' Seq2SeqTrainingArguments, imported only when a command parses.
TRAINING_ARGUMENTS = "Seq2SeqTrainingArguments"
COMMAND_SETTINGS: dict[str, tuple[type | str, ...]] = {
    "train": (ModelArguments, DataArguments, TRAINING_ARGUMENTS, FinetuningArguments, GeneratingArguments),
    # estimate takes the training settings, so a training config is estimated as is
    "estimate": (ModelArguments, DataArguments, TRAINING_ARGUMENTS, FinetuningArguments, GeneratingArguments, EstimateArguments),
    # eval takes the training settings too, so a training config evaluates as is
    "eval": (ModelArguments, DataArguments, TRAINING_ARGUMENTS, FinetuningArguments, GeneratingArguments, EvalArguments),
    "chat": (ModelArguments, DataArguments, GeneratingArguments),
    "api": (ModelArguments, DataArguments, GeneratingArguments, ApiArguments),
    "export": (ModelArguments, DataArguments, ExportArguments),
    "data": (InspectArguments, ModelArguments, DataArguments),
    "score": (ModelArguments, DataArguments, ScoreArguments),
}
TRAIN_CONFIG_FILE = "train_config.yaml"
EVALUATING = ("do_eval", "do_predict")


@dataclass(frozen=True)
class TrainArgs:
    """Everything `glmtune train` was asked: the common settings and the stage's own (Stage.settings)."""

    model: ModelArguments
    data: DataArguments
    training: Any  # transformers' Seq2SeqTrainingArguments
    finetuning: FinetuningArguments
    generating: GeneratingArguments
    stage_settings: tuple[Any, ...] = ()

    def all(self) -> tuple[Any, ...]:
        return (self.model, self.data, self.training, self.finetuning, self.generating, *self.stage_settings)


def parse_command(command: str, argv: Sequence[str], extra: tuple[type, ...] = (), defaults: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """One instance of each of the command's settings classes (and `extra` ones), in COMMAND_SETTINGS order."""
    classes = tuple(resolve_class(cls) for cls in COMMAND_SETTINGS[command]) + extra
    parsed = parse_dataclasses(classes, argv, defaults)
    for settings in parsed:
        if isinstance(settings, ModelArguments):
            apply_threads(settings.threads)
    return parsed


def apply_threads(threads: int | None) -> None:
    """Set torch's intra-op threads once, as the command starts (None: torch's default; below 1: check_model says)."""
    if threads is not None and threads >= 1:
        import torch

        torch.set_num_threads(threads)


def resolve_class(cls: type | str) -> type:
    if cls == TRAINING_ARGUMENTS:
        from transformers import Seq2SeqTrainingArguments

        return Seq2SeqTrainingArguments
    assert isinstance(cls, type)
    return cls


def training_defaults(method: str) -> dict[str, Any]:
    """glmtune's training defaults for a fine-tuning method: TRAINING_DEFAULTS plus the method's learning rate."""
    import torch

    return {
        **TRAINING_DEFAULTS,
        "learning_rate": METHODS.get(method, METHODS["lora"]).learning_rate,
        "dataloader_pin_memory": torch.cuda.is_available(),  # pinning only helps copies to a GPU
        "use_cpu": default_device() == "cpu",  # transformers refuses --bf16 without a GPU unless told it is a CPU run
    }


def train_command_defaults(method: str | None, stage: str, dataset_defaults: dict[str, Any] | None) -> dict[str, Any]:
    """The defaults `train` and `estimate` parse over: the method's, then the stage's, then the datasets' asks."""
    return {
        **training_defaults(method or "lora"),
        **dict(STAGES[stage].defaults if stage in STAGES else ()),
        **(dataset_defaults or {}),
    }


def train_settings_yaml(args: TrainArgs) -> str:
    """The resolved training settings as YAML that `get_train_args([file])` parses back to the same values."""
    defaults = {**training_defaults(args.finetuning.finetuning_type), **COUNTED_TOKENS}
    return settings_to_yaml(*args.all(), training_defaults=defaults)


def write_train_config(args: TrainArgs) -> Path:
    """Save the fully resolved settings in output_dir first, so even a crashed run says how it was started."""
    path = Path(args.training.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / TRAIN_CONFIG_FILE).write_text(train_settings_yaml(args), encoding="utf-8")
    return path / TRAIN_CONFIG_FILE


def get_infer_args(argv: Sequence[str]) -> tuple[ModelArguments, DataArguments, GeneratingArguments]:
    """Arguments for chat and the web UI's chat."""
    model_args, data_args, generating_args = parse_command("chat", argv)
    raise_if_problems(check_model(model_args) + check_generation(generating_args))
    return model_args, data_args, generating_args


def get_api_args(argv: Sequence[str]) -> tuple[ModelArguments, DataArguments, GeneratingArguments, ApiArguments]:
    """Arguments for `glmtune api`: what `chat` takes, plus where to listen and how much load to accept."""
    model_args, data_args, generating_args, api_args = parse_command("api", argv)
    raise_if_problems(check_model(model_args) + check_generation(generating_args) + check_api(api_args))
    return model_args, data_args, generating_args, api_args


def get_export_args(argv: Sequence[str]) -> tuple[ModelArguments, DataArguments, ExportArguments]:
    """Arguments for `glmtune export`: a base model, adapters to merge, and where to write."""
    model_args, data_args, export_args = parse_command("export", argv)
    problems = check_model(model_args)
    if not export_args.export_dir:
        problems.append("export needs --out DIR (export_dir)")
    if export_args.export_size <= 0:
        problems.append(f"export_size={export_args.export_size}: must be > 0 (GB per shard)")
    if model_args.quantization_bit is not None:
        problems.append("export merges into full-precision weights: drop quantization_bit")
    raise_if_problems(problems)
    return model_args, data_args, export_args


def get_inspect_args(argv: Sequence[str], dataset: str | None) -> tuple[InspectArguments, ModelArguments, DataArguments]:
    """Arguments for `glmtune data inspect`; a positional dataset name wins over a `dataset` setting."""
    named = ["--dataset", dataset] if dataset else []  # flags come last, so the positional name wins
    inspect_args, model_args, data_args = parse_command("data", [*argv, *named])
    problems = check_model(model_args) + check_data(data_args)
    if not data_args.dataset:
        problems.append("name a dataset: glmtune data inspect NAME")
    if inspect_args.num_samples < 0:
        problems.append(f"-n {inspect_args.num_samples}: show zero or more samples")
    if data_args.streaming:
        problems.append("inspect reads the whole dataset for its statistics: drop streaming, or limit rows with max_samples")
    raise_if_problems(problems)
    return inspect_args, model_args, data_args


def get_score_args(argv: Sequence[str]) -> tuple[ModelArguments, DataArguments, ScoreArguments]:
    """Arguments for `glmtune score`: a reward model, and one answer or a pairwise dataset to score."""
    model_args, data_args, score_args = parse_command("score", argv)
    problems = check_model(model_args)
    one = score_args.prompt is not None or score_args.response is not None
    if one and (score_args.prompt is None or score_args.response is None):
        problems.append("score one answer with both --prompt and --response")
    if one == bool(data_args.dataset):
        problems.append("give --prompt and --response, or a pairwise --dataset (accuracy and margin), not both")
    if score_args.batch_size < 1:
        problems.append(f"batch_size={score_args.batch_size}: must be at least 1")
    raise_if_problems(problems + check_data(data_args))
    return model_args, data_args, score_args


def get_train_args(argv: Sequence[str], dataset_defaults: dict[str, Any] | None = None) -> TrainArgs:
    """Arguments for `glmtune train`; training arguments are HF's Seq2SeqTrainingArguments. `dataset_defaults`:
    what the datasets ask for (train/dataset_defaults.py), over glmtune's defaults and under the user's settings."""
    # An unknown stage or method is reported by the parser's choice check, with a suggestion.
    peeked = peek_settings(argv, ("stage", "finetuning_type", "do_train", "deepspeed", *EVALUATING))
    raise_if_problems(check_deepspeed(peeked["deepspeed"]))  # transformers' parsing would fail on it with a traceback
    stage = peeked["stage"] or "sft"
    stage_settings_classes = STAGES[stage].settings_classes() if stage in STAGES else ()
    defaults = train_command_defaults(peeked["finetuning_type"], stage, dataset_defaults)
    if peeked["do_train"] is None and any(is_true(peeked[name]) for name in EVALUATING):
        defaults["do_train"] = False  # ChatGLM Efficient Tuning's evaluation command names do_eval alone, no training
    model_args, data_args, training_args, finetuning_args, generating_args, *stage_settings = parse_command(
        "train", argv, stage_settings_classes, defaults
    )
    if training_args.include_num_input_tokens_seen == "no":
        training_args.include_num_input_tokens_seen = COUNTED_TOKENS["include_num_input_tokens_seen"]
    if not (training_args.fp16 and training_args.bf16):  # both on is reported below
        apply_training_precision(model_args, training_args)
    raise_if_problems(
        check_model(model_args)
        + check_data(data_args)
        + check_finetuning(model_args, finetuning_args)
        + check_training(training_args, data_args)
        + check_micro_batches(training_args, finetuning_args)
        + check_fsdp(training_args)
        + check_evaluation(training_args, data_args, STAGES[finetuning_args.stage])
        + check_replay(data_args, STAGES[finetuning_args.stage])
        + check_generation(generating_args)
        + [problem for own in stage_settings if hasattr(own, "problems") for problem in own.problems(training_args)]
    )
    return TrainArgs(model_args, data_args, training_args, finetuning_args, generating_args, tuple(stage_settings))


@dataclass(frozen=True)
class EstimateRequest:
    """What `glmtune estimate` was asked: the training settings as given (precision unresolved, since the
    estimated device need not be this machine's), its own settings, and DeepSpeed's config."""

    train: TrainArgs
    estimate: EstimateArguments
    deepspeed: str | dict | None
    output_dir: str | None  # where to write the estimate's JSON: only where the user named one


def get_estimate_args(argv: Sequence[str], dataset_defaults: dict[str, Any] | None = None) -> EstimateRequest:
    """The training settings without the checks that need data or a run: nothing is read or trained.

    DeepSpeed's config is taken aside before parsing: transformers' training arguments import
    deepspeed when it is set, and an estimate must work where deepspeed is not installed.
    """
    peeked = peek_settings(argv, ("stage", "finetuning_type", "deepspeed", "output_dir"))
    stage = peeked["stage"] or "sft"
    stage_settings_classes = STAGES[stage].settings_classes() if stage in STAGES else ()
    defaults = train_command_defaults(peeked["finetuning_type"], stage, dataset_defaults)
    model_args, data_args, training_args, finetuning_args, generating_args, estimate_args, *stage_settings = parse_command(
        "estimate", [*argv, "--deepspeed", ""], stage_settings_classes, defaults
    )
    raise_if_problems(
        check_model(model_args)
        + check_data(data_args)
        + check_finetuning(model_args, finetuning_args)
        + check_generation(generating_args)
        + estimate_args.problems()
    )
    training_args.deepspeed = None
    args = TrainArgs(model_args, data_args, training_args, finetuning_args, generating_args, tuple(stage_settings))
    return EstimateRequest(args, estimate_args, peeked["deepspeed"] or None, peeked["output_dir"])


def get_eval_args(argv: Sequence[str]) -> tuple[ModelArguments, DataArguments, Any, GeneratingArguments, EvalArguments]:
    """Arguments for `glmtune eval`: the same settings as training (its config files carry over) with EVAL_DEFAULTS."""
    task = peek_settings(argv, ("task",))["task"] or "generate"
    defaults = {**EVAL_DEFAULTS, **TASK_DEFAULTS.get(task, {})}
    model_args, data_args, training_args, _, generating_args, eval_args = parse_command(
        "eval", argv, defaults={**defaults, "use_cpu": default_device() == "cpu"}
    )
    apply_training_precision(model_args, training_args)
    raise_if_problems(
        check_model(model_args)
        + check_data(data_args)
        + check_eval_command(training_args, data_args)
        + check_generation(generating_args)
        + eval_args.problems(model_args.adapter_name_or_path)
    )
    return model_args, data_args, training_args, generating_args, eval_args

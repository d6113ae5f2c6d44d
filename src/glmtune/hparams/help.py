"""Compact settings help per command: name, default and one line of meaning."""

import dataclasses

from glmtune.hparams.api_args import ApiArguments
from glmtune.hparams.data_args import DataArguments
from glmtune.hparams.export_args import ExportArguments
from glmtune.hparams.finetuning_args import FinetuningArguments
from glmtune.hparams.generating_args import GeneratingArguments
from glmtune.hparams.model_args import ModelArguments
from glmtune.hparams.parser import ARG_ALIASES


def command_settings() -> dict[str, tuple[type, ...]]:
    """Settings per command; data's own arguments live with the inspect command."""
    from glmtune.data.inspect import InspectArguments

    return {
        "api": (ModelArguments, DataArguments, GeneratingArguments, ApiArguments),
        "chat": (ModelArguments, DataArguments, GeneratingArguments),
        "data": (InspectArguments, ModelArguments, DataArguments),
        "eval": (ModelArguments, DataArguments, GeneratingArguments),
        "export": (ModelArguments, ExportArguments),
        "train": (ModelArguments, DataArguments, FinetuningArguments, GeneratingArguments),
    }


def settings_help(command: str) -> str:
    lines = [f"usage: glmtune {command} [CONFIG.yaml] [key=value ...] [--flag value ...]", ""]
    for cls in command_settings().get(command, ()):
        lines.append(f"{cls.__name__}:")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else ""
            lines.append(f"  --{f.name} (default: {default})\n      {f.metadata.get('help', '')}")
        lines.append("")
    if command == "train":
        lines.append("plus every transformers Seq2SeqTrainingArguments flag (output_dir, learning_rate, ...).")
    if command == "eval":
        lines.append(
            "plus output_dir (default: outputs/eval), per_device_eval_batch_size (default: 8) and seed from "
            "transformers' training arguments; decoding is greedy unless do_sample is set. A training config works as is."
        )
    aliases = ", ".join(f"--{alias} = --{name}" for alias, name in ARG_ALIASES.items())
    lines.append(f"aliases: {aliases}; --use_v2 is accepted and ignored.")
    return "\n".join(lines)

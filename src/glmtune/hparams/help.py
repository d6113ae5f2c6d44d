"""Compact settings help per command: name, default and one line of meaning."""

import dataclasses

from glmtune.hparams.entry import COMMAND_SETTINGS
from glmtune.hparams.parser import ARG_ALIASES, NEGATED_ALIASES, field_choices
from glmtune.stages import STAGES


def class_help(cls: type, note: str = "") -> list[str]:
    """A settings class as lines: each setting with its default, its choices and its meaning."""
    lines = [f"{cls.__name__}{note}:"]
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else ""
        choices = field_choices(f)
        one_of = f"; one of {', '.join(map(str, choices))}" if choices else ""
        lines.append(f"  --{f.name} (default: {default}{one_of})\n      {f.metadata.get('help', '')}")
    return [*lines, ""]


def settings_help(command: str) -> str:
    lines = [f"usage: glmtune {command} [CONFIG.yaml] [key=value ...] [--flag value ...]", ""]
    for cls in COMMAND_SETTINGS.get(command, ()):
        if not isinstance(cls, str):  # a str stands for transformers' training arguments: the last line lists them
            lines += class_help(cls)
    if command in ("train", "estimate"):
        for stage in STAGES.values():
            for cls in stage.settings_classes():
                lines += class_help(cls, f" (stage {stage.name})")
        lines.append("plus every transformers Seq2SeqTrainingArguments flag (output_dir, learning_rate, ...).")
    if command == "eval":
        lines.append(
            "plus output_dir (default: outputs/eval), per_device_eval_batch_size (default: 8) and seed from "
            "transformers' training arguments; decoding is greedy unless do_sample is set. A training config works as is."
        )
    aliases = ", ".join(f"--{alias} = --{name}" for alias, name in ARG_ALIASES.items())
    negated = ", ".join(f"--{alias} false = --{name} true" for alias, name in NEGATED_ALIASES.items())
    lines.append(f"aliases: {aliases}; {negated}; --use_v2 is accepted and ignored.")
    return "\n".join(lines)

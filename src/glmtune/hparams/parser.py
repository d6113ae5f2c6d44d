"""Parse settings from a YAML file, then `key=value` overrides, then `--flags`.

Later sources win. Flag names of ChatGLM Efficient Tuning and LLaMA-Factory are accepted
through `ARG_ALIASES`, so their configs and command lines carry over unchanged.
"""

import argparse
import dataclasses
import enum
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from glmtune.errors import ConfigError, did_you_mean

ARG_ALIASES = {
    "checkpoint_dir": "adapter_name_or_path",
    "adapter": "adapter_name_or_path",
    "model": "model_name_or_path",
    "dev_ratio": "val_size",
    "source_prefix": "default_system",
    "system": "default_system",
    "prompt_template": "template",
    "torch_dtype": "dtype",
    "out": "export_dir",
    "format": "export_format",
    "dpo_beta": "pref_beta",
}
# ChatGLM Efficient Tuning's `--use_v2` chose ChatGLM2 code paths; glmtune reads the model's own config instead.
NO_OP_FLAGS = frozenset({"use_v2"})
# Its `--resume_lora_training False` merged the given adapters and started a new one: glmtune's create_new_adapter.
NEGATED_ALIASES = {"resume_lora_training": "create_new_adapter"}
TRUE_WORDS, BOOL_WORDS = ("true", "1", "yes"), ("true", "false", "1", "0", "yes", "no")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
# Written into a resolved config even at their defaults: where the run writes, and whether it trains
# (which otherwise follows from do_eval / do_predict, and transformers turns do_eval on by itself).
ALWAYS_WRITTEN = ("output_dir", "do_train")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Load a YAML or JSON config into a flat dict, naming the file in any error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.suffix != ".json" else json.loads(
            path.read_text(encoding="utf-8")
        )
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {error}") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of setting names to values, got {type(loaded).__name__}")
    return loaded


def split_argv(argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Separate file and `key=value` settings (merged, in order) from `--flag` arguments."""
    settings: dict[str, Any] = {}
    flags: list[str] = []
    in_flags = False
    for position, item in enumerate(argv):
        if item.startswith("-"):
            in_flags = True
        if in_flags:
            flags.append(item)
        elif position == 0 and item.endswith(CONFIG_SUFFIXES):
            settings.update(read_config_file(item))
        elif "=" in item:
            key, value = item.split("=", 1)
            settings[key.strip()] = value
        else:
            raise ConfigError(f"unexpected argument {item!r}: use CONFIG.yaml first, then key=value, then --flags")
    return settings, flags


def is_true(value: Any) -> bool:
    return value is True or str(value).strip().lower() in TRUE_WORDS


def rename_aliases(settings: dict[str, Any]) -> dict[str, Any]:
    renamed: dict[str, Any] = {}
    for key, value in settings.items():
        if key in NO_OP_FLAGS:
            continue
        if key in NEGATED_ALIASES:
            renamed[NEGATED_ALIASES[key]] = not is_true(value)
            continue
        renamed[ARG_ALIASES.get(key, key)] = value
    return renamed


def negated_flag(name: str, value: str | None) -> str:
    """`--resume_lora_training False` as `--create_new_adapter=true` (a bare flag means true)."""
    return f"--{NEGATED_ALIASES[name]}={str(not is_true(value if value is not None else True)).lower()}"


def rename_flag_aliases(flags: list[str]) -> list[str]:
    """Rewrite alias flags to their canonical names and drop no-op flags (with an optional bool value)."""
    renamed: list[str] = []
    skip_value = False
    for index, item in enumerate(flags):
        if skip_value:
            skip_value = False
            if item.lower() in BOOL_WORDS:
                continue
        if item.startswith("--"):
            name, sep, value = item[2:].partition("=")
            if name in NO_OP_FLAGS:
                skip_value = not sep
                continue
            if name in NEGATED_ALIASES:
                following = flags[index + 1] if index + 1 < len(flags) else ""
                given = value if sep else (following if following.lower() in BOOL_WORDS else None)
                skip_value = not sep and given is not None
                renamed.append(negated_flag(name, given))
                continue
            item = f"--{ARG_ALIASES.get(name, name)}{sep}{value}"
        renamed.append(item)
    return renamed


def field_map(dataclass_types: Sequence[type]) -> dict[str, dataclasses.Field]:
    return {f.name: f for cls in dataclass_types for f in dataclasses.fields(cls) if f.init}


def normalise_values(settings: dict[str, Any], fields: dict[str, dataclasses.Field]) -> dict[str, Any]:
    """Reject unknown keys and join YAML lists given for comma-separated string fields."""
    unknown = [key for key in settings if key not in fields]
    if unknown:
        problems = [f"unknown setting {key!r}{did_you_mean(key, fields)}" for key in unknown]
        raise ConfigError("; ".join(problems))
    normalised = {}
    for key, value in settings.items():
        if isinstance(value, list) and accepts_str_only(fields[key].type):
            value = ",".join(str(item) for item in value)
        normalised[key] = value
    return normalised


def accepts_str_only(annotation: Any) -> bool:
    options = set(typing.get_args(annotation)) if isinstance(annotation, types.UnionType) else {annotation}
    return options - {type(None)} == {str}


def field_choices(f: dataclasses.Field) -> tuple[Any, ...] | None:
    """A field's allowed values: its Literal type's, or the `choices` its metadata takes from a registry."""
    if typing.get_origin(f.type) is typing.Literal:
        return typing.get_args(f.type)
    return f.metadata.get("choices")


def check_choice_fields(instance: Any) -> None:
    """argparse checks choices only for command-line values; YAML values are checked here."""
    for f in dataclasses.fields(instance):
        choices = field_choices(f)
        value = getattr(instance, f.name)
        if choices is not None and value not in choices and value != f.default:  # None may mean "unset"
            raise ConfigError(
                f"{f.name}={value!r} is not one of {', '.join(map(str, choices))}{did_you_mean(str(value), choices)}"
            )


def peek_settings(argv: Sequence[str], names: Sequence[str]) -> dict[str, Any]:
    """The values a command line gives `names` (None where absent), before full parsing; the config file is read once."""
    settings, flags = split_argv(argv)
    renamed = rename_aliases(settings)
    values = {name: renamed.get(name) for name in names}
    flags = rename_flag_aliases(flags)
    for index, item in enumerate(flags):
        key, sep, inline = item.partition("=")
        if key.startswith("--") and key[2:] in values:
            following = flags[index + 1] if index + 1 < len(flags) else "--"
            values[key[2:]] = inline if sep else (True if following.startswith("--") else following)  # a bare flag is true
    return values


def peek_setting(argv: Sequence[str], name: str) -> Any:
    """The value a command line gives `name` (None if absent), before full parsing."""
    return peek_settings(argv, (name,))[name]


def parse_dataclasses(
    dataclass_types: Sequence[type], argv: Sequence[str], defaults: dict[str, Any] | None = None
) -> tuple[Any, ...]:
    """Build one instance of each dataclass from defaults, CONFIG.yaml, key=value items and --flags."""
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        def error(self, message: str) -> typing.NoReturn:
            raise ConfigError(message)

    settings, flags = split_argv(argv)
    fields = field_map(dataclass_types)
    settings = normalise_values(rename_aliases(settings), fields)
    parser = Parser(list(dataclass_types))
    parser.set_defaults(**{**(defaults or {}), **settings})
    try:
        *instances, remaining = parser.parse_args_into_dataclasses(
            args=rename_flag_aliases(list(flags)), return_remaining_strings=True
        )
    except ConfigError:
        raise
    except argparse.ArgumentTypeError as error:
        raise ConfigError(str(error)) from error
    except ValueError as error:  # transformers' TrainingArguments validate themselves on construction
        raise ConfigError(f"invalid training setting: {error}") from error
    unknown = [item for item in remaining if item.startswith("--")]
    if remaining:
        name = (unknown or remaining)[0].lstrip("-").split("=")[0]
        raise ConfigError(f"unknown argument {(unknown or remaining)[0]!r}{did_you_mean(name, fields)}")
    for instance in instances:
        check_choice_fields(instance)
    return tuple(instances)


def to_plain(value: Any) -> Any:
    """Make a setting YAML-safe (enums to their value, tuples to lists)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    return value


def resolved_settings(*instances: Any, training_defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """All glmtune settings, plus the training settings that differ from their defaults.

    Training arguments hold ~120 fields, most derived or untouched; writing only the changed
    ones keeps the saved config readable. The defaults compared against are those a re-parse
    applies (transformers' overlaid with `training_defaults`), so the file re-parses exactly.
    """
    from transformers import TrainingArguments

    settings: dict[str, Any] = {}
    for instance in instances:
        if isinstance(instance, TrainingArguments):
            defaults = type(instance)(**{**(training_defaults or {}), "output_dir": instance.output_dir})
            for f in dataclasses.fields(instance):
                if f.init and getattr(instance, f.name) != getattr(defaults, f.name) or f.name in ALWAYS_WRITTEN:
                    settings[f.name] = to_plain(getattr(instance, f.name))
        else:
            settings.update({key: to_plain(value) for key, value in dataclasses.asdict(instance).items()})
    return settings


def settings_to_yaml(*instances: Any, training_defaults: dict[str, Any] | None = None) -> str:
    settings = resolved_settings(*instances, training_defaults=training_defaults)
    return yaml.safe_dump(settings, sort_keys=False, allow_unicode=True)

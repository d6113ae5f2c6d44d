"""Training settings the datasets ask for (`defaults` in dataset_info.json), under whatever the user sets.

A narrow dataset knows what it needs better than a method-wide default: the bundled identity set teaches
one fact from 90 rows and asks for replay against forgetting, and for LoRA a higher rate and batch. The settings apply
as defaults, so a config file, key=value or a flag still wins, and the resolved config written into the
output folder records them. Datasets mixed in one run must agree on a setting they both name.
"""

import dataclasses
import logging
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from glmtune.data.registry import Registry, load_registry, resolve
from glmtune.errors import ConfigError, did_you_mean
from glmtune.hparams.entry import (
    COMMAND_SETTINGS,
    TrainArgs,
    get_train_args,
    resolve_class,
)
from glmtune.hparams.parser import peek_settings
from glmtune.hparams.validation import split_names
from glmtune.methods import METHODS
from glmtune.stages import STAGES

logger = logging.getLogger(__name__)
Parsed = TypeVar("Parsed")


def train_args_with_dataset_defaults(argv: Sequence[str]) -> TrainArgs:
    """The training settings, with what the training datasets ask for wherever the user set nothing."""
    return with_dataset_defaults(argv, get_train_args, lambda args: args)


def with_dataset_defaults(argv: Sequence[str], parse: Callable[..., Parsed], train_args: Callable[[Parsed], TrainArgs]) -> Parsed:
    """`parse(argv)` again with the datasets' defaults where they ask for any (`train` and `estimate` both parse
    the training settings; `train_args` finds them in what `parse` returns)."""
    parsed = parse(argv)
    args = train_args(parsed)
    registry = load_registry(args.data.dataset_dir)
    asked = asked_settings(args, argv, registry)
    if not asked:
        return parsed
    by_dataset: dict[str, list[str]] = {}
    for setting, (value, dataset) in asked.items():
        by_dataset.setdefault(dataset, []).append(f"{setting}={value}")
    named = "; ".join(f"dataset {dataset!r} asks for {', '.join(items)}" for dataset, items in by_dataset.items())
    logger.info("%s (%s defaults)", named, registry.file)
    try:
        return parse(argv, {setting: as_text(value) for setting, (value, _) in asked.items()})
    except ConfigError as error:
        raise ConfigError(f"{registry.file}: {named}: {error}") from error


def asked_settings(args: TrainArgs, argv: Sequence[str], registry: Registry) -> dict[str, tuple[Any, str]]:
    """setting -> (value, the dataset asking) for this run's stage and method, leaving out what `argv` sets;
    datasets that disagree are an error."""
    stage = STAGES[args.finetuning.stage]
    wanted: list[tuple[str, Any, str]] = []  # (setting, value, dataset) in the datasets' order
    for name in split_names(args.data.dataset):
        place = f"{registry.file}: dataset {name!r}: defaults"
        defaults = resolve(name, registry, args.data.generator_args).defaults
        own = for_method(defaults, args.finetuning.finetuning_type, place)
        wanted += [(setting, value, name) for setting, value in own.items() if stage_takes(setting, stage.name)]
    given = peek_settings(argv, [setting for setting, _, _ in wanted])  # one read of the config file
    asked: dict[str, tuple[Any, str]] = {}
    for setting, value, name in wanted:
        if given[setting] is not None:
            continue
        if setting in asked and asked[setting][0] != value:
            raise ConfigError(
                f"datasets {asked[setting][1]!r} and {name!r} ask for different {setting} ({asked[setting][0]!r}, "
                f"{value!r}) in {registry.file}: set {setting} yourself"
            )
        asked.setdefault(setting, (value, name))
    return asked


def as_text(value: Any) -> Any:
    """Numbers and booleans as the text a flag would give, so the parser checks them against the setting's type."""
    return value if isinstance(value, str | list | dict) or value is None else str(value)


def for_method(defaults: dict[str, Any], method: str, place: str) -> dict[str, Any]:
    """The settings for every method, with those under this method's name over them; every method's are checked,
    so a mistake shows whichever method runs."""
    general = {name: value for name, value in defaults.items() if name not in METHODS}
    for name, own in defaults.items():
        if name in METHODS and not isinstance(own, dict):
            raise ConfigError(f"{place}: {name} must be an object of settings for that method, got {own!r}")
    for setting in [*general, *(setting for name in METHODS for setting in defaults.get(name, {}))]:
        check_known(setting, place)
    return {**general, **defaults.get(method, {})}


@cache
def stage_fields(stage: str) -> frozenset[str]:
    """The settings `glmtune train` parses for `stage`."""
    classes = [resolve_class(cls) for cls in COMMAND_SETTINGS["train"]] + list(STAGES[stage].settings_classes())
    return frozenset(f.name for cls in classes for f in dataclasses.fields(cls))


def check_known(setting: str, place: str) -> None:
    known = set().union(*(stage_fields(stage) for stage in STAGES))
    if setting not in known:
        raise ConfigError(f"{place}: unknown training setting {setting!r}{did_you_mean(setting, known)}")


def stage_takes(setting: str, stage: str) -> bool:
    """A setting of another stage (pref_beta for sft) does not apply; replay only where the stage replays."""
    return setting in stage_fields(stage) and (setting != "replay" or STAGES[stage].replays)

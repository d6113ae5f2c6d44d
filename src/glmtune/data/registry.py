"""Resolve dataset names through dataset_info.json, in both dialects, or as plain paths.

ChatGLM Efficient Tuning entries (`file_name`, `file_sha1`, `columns: prompt/query/response/
history`) and LLaMA-Factory entries (`formatting`, `columns`, `tags`, `ranking`) are read as
they ship, so users carry their data folders over unchanged. glmtune adds generated
datasets (`generator`, `generator_args`). Only the entries asked for are validated, so a
registry holding entries glmtune cannot read (hub datasets, images) still serves the rest.
"""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from glmtune.data.converters import COLUMN_KEYS, TAG_KEYS, RowFormat
from glmtune.data.encodings import codec_name
from glmtune.errors import ConfigError, did_you_mean

logger = logging.getLogger(__name__)

REGISTRY_FILE = "dataset_info.json"
KNOWN_KEYS = frozenset(
    {"file_name", "file_sha1", "formatting", "columns", "tags", "ranking", "generator", "generator_args", "whole_file", "encoding", "defaults", "replay"}
)
REMOTE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
MEDIA_COLUMNS = ("images", "videos", "audios")
FORMATTINGS = ("alpaca", "sharegpt")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset to load: where its rows come from and how they map onto Examples.

    `row_format` is None for a plain path: the loader sniffs it from the first row.
    """

    name: str
    path: Path | None = None
    row_format: RowFormat | None = None
    sha1: str | None = None
    whole_file: bool = False
    encoding: str | None = None  # of its text files; None: the `encoding` setting, else UTF-8
    generator: str | None = None
    generator_args: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # training settings it asks for (entry_defaults)


@dataclass(frozen=True)
class Registry:
    """The parsed dataset_info.json of one folder (entries are checked only when asked for)."""

    folder: Path
    entries: dict[str, Any]

    @property
    def file(self) -> Path:
        return self.folder / REGISTRY_FILE


def bundled_dir() -> Path:
    """glmtune's own datasets, shipped inside the package as plain files."""
    return Path(str(resources.files("glmtune") / "resources"))


def load_registry(dataset_dir: str | Path | None) -> Registry:
    """dataset_info.json of `dataset_dir`, or glmtune's bundled one; an absent file is an empty registry."""
    folder = Path(dataset_dir).expanduser() if dataset_dir else bundled_dir()
    if dataset_dir and not folder.is_dir():
        raise ConfigError(f"dataset_dir {folder} is not a folder")
    file = folder / REGISTRY_FILE
    if not file.is_file():
        return Registry(folder, {})
    try:
        entries = json.loads(file.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{file}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from error
    if not isinstance(entries, dict):
        raise ConfigError(f"{file}: expected an object mapping dataset names to entries")
    return Registry(folder, entries)


def resolve(name: str, registry: Registry, generator_args: str | None = None) -> DatasetSpec:
    """A registered name first, then a path (relative to the registry folder, then to the working directory)."""
    if name in registry.entries:
        return spec_from_entry(name, registry.entries[name], registry, parse_generator_args(generator_args))
    for candidate in (registry.folder / name, Path(name).expanduser()):
        if candidate.exists():
            return DatasetSpec(name=name, path=candidate)
    raise ConfigError(unknown_name_message(name, registry))


def unknown_name_message(name: str, registry: Registry) -> str:
    hint = did_you_mean(name, registry.entries)
    if registry.entries:
        where = f"names in {registry.file}: {', '.join(sorted(registry.entries))}"
    else:
        where = f"{registry.file} does not exist"
    return f"unknown dataset {name!r}{hint}; {where}; or give a path to a data file or folder"


def spec_from_entry(name: str, entry: Any, registry: Registry, override_args: dict[str, Any]) -> DatasetSpec:
    where = f"{registry.file}: dataset {name!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object, got {type(entry).__name__}")
    check_entry_keys(entry, where)
    row_format = entry_format(entry, where)
    if "generator" in entry:
        return DatasetSpec(
            name=name,
            row_format=row_format,
            generator=str(entry["generator"]),
            generator_args={**mapping(entry.get("generator_args") or {}, f"{where}: generator_args"), **override_args},
            defaults=entry_defaults(entry, where),
        )
    return DatasetSpec(
        name=name,
        path=registry.folder / str(entry["file_name"]),
        row_format=row_format,
        sha1=entry_sha1(entry, where),
        whole_file=bool(entry.get("whole_file", False)),
        encoding=entry_encoding(entry, where),
        defaults=entry_defaults(entry, where),
    )


def entry_sha1(entry: dict[str, Any], where: str) -> str | None:
    value = entry.get("file_sha1")
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: file_sha1 must be a string of 40 hex digits, got {value!r}")
    return value


def entry_defaults(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """glmtune's own key: training settings a dataset asks for when the user sets none (a narrow identity set wants
    replay and a higher LoRA rate). A method's name holds settings for that method alone: {"lora": {...}}. The
    older `"replay": R` is short for `"defaults": {"replay": R}`. Names and values are checked where they apply."""
    defaults = entry.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{where}: defaults must be an object of training settings, got {defaults!r}")
    if "replay" in entry:
        defaults = {**defaults, "replay": entry["replay"]}
    return defaults


def entry_encoding(entry: dict[str, Any], where: str) -> str | None:
    """glmtune's own key: GBK, GB18030 or UTF-16 files are read as they are, without converting them first."""
    if entry.get("encoding") is None:
        return None
    if not isinstance(entry["encoding"], str):
        raise ConfigError(f"{where}: encoding must be a name such as \"gbk\", got {entry['encoding']!r}")
    return codec_name(entry["encoding"], f"{where}: encoding")


def check_entry_keys(entry: dict[str, Any], where: str) -> None:
    remote = [key for key in REMOTE_KEYS if key in entry]
    if remote and "file_name" not in entry:
        raise ConfigError(f"{where} uses {remote[0]}: glmtune reads local files only; download it and set file_name")
    if "file_name" not in entry and "generator" not in entry:
        raise ConfigError(f"{where} needs file_name (a file or folder next to dataset_info.json) or generator")
    ignored = sorted(set(entry) - KNOWN_KEYS - set(REMOTE_KEYS))
    if ignored:
        logger.warning("%s: ignoring keys glmtune does not use: %s", where, ", ".join(ignored))


def entry_format(entry: dict[str, Any], where: str) -> RowFormat:
    formatting = entry.get("formatting", "alpaca")
    if formatting not in FORMATTINGS:
        raise ConfigError(f"{where}: formatting {formatting!r} is not one of {', '.join(FORMATTINGS)}")
    columns = mapping(entry.get("columns") or {}, f"{where}: columns")
    tags = mapping(entry.get("tags") or {}, f"{where}: tags")
    media = [key for key in MEDIA_COLUMNS if key in columns]
    if media:
        raise ConfigError(f"{where}: column {media[0]!r}: glmtune trains on text only")
    check_names(columns, COLUMN_KEYS, f"{where}: columns")
    check_names(tags, TAG_KEYS, f"{where}: tags")
    return RowFormat(formatting=formatting, columns=columns, tags=tags, ranking=bool(entry.get("ranking", False)))


def check_names(given: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    for key, value in given.items():
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}; known: {', '.join(sorted(allowed))}")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must name a column or tag as text, got {value!r}")


def mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def parse_generator_args(text: str | None) -> dict[str, Any]:
    """DataArguments.generator_args: a YAML mapping that overrides every generated dataset's own arguments."""
    if not text:
        return {}
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"generator_args is not valid YAML: {error}") from error
    if not isinstance(loaded, dict):
        raise ConfigError(f"generator_args must be a mapping such as '{{size: 5000, seed: 1}}', got {text!r}")
    return loaded


def verify_sha1(spec: DatasetSpec) -> None:
    """Check file_sha1 so a changed or truncated file is caught before training on it."""
    if spec.sha1 is None or spec.path is None:
        return
    if not spec.path.is_file():
        raise ConfigError(f"dataset {spec.name!r}: file_sha1 needs a file, {spec.path} is not one")
    digest = hashlib.sha1()
    with spec.path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != spec.sha1.lower():
        raise ConfigError(
            f"dataset {spec.name!r}: {spec.path} has SHA-1 {digest.hexdigest()}, but dataset_info.json expects "
            f"{spec.sha1}: the file changed; restore it or update file_sha1"
        )

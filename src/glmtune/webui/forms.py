"""Fields shared by several tabs: models and datasets named in the page, checked against the workspace."""

from pathlib import Path
from typing import Any

from glmtune.data.registry import load_registry
from glmtune.default_model import DEFAULT_MODEL_ALIAS
from glmtune.errors import ConfigError
from glmtune.webui.workspace import Workspace


def model_setting(workspace: Workspace, text: str | None) -> str | None:
    """None for the embedded default model, else a model folder or .gguf file inside the workspace.

    Hub ids are not accepted here: everything the page loads lives in the workspace.
    """
    if not text or not text.strip() or text.strip() == DEFAULT_MODEL_ALIAS:
        return None
    return str(workspace.path(text, "model", must_exist=True))


def adapter_setting(workspace: Workspace, text: str | None, required: bool = False) -> str | None:
    if required or (text and text.strip()):
        return str(workspace.path(text or "", "adapter", must_exist=True))
    return None


def dataset_dir_setting(workspace: Workspace, text: str | None) -> str | None:
    """None for glmtune's bundled datasets, else a folder inside the workspace."""
    path = workspace.optional_path(text, "dataset folder", must_exist=True)
    if path is not None and not path.is_dir():
        raise ConfigError(f"dataset folder: {text!r} is not a folder")
    return str(path) if path else None


def dataset_names(workspace: Workspace, dataset_dir: str | None) -> list[str]:
    """The names a dataset folder's dataset_info.json registers (the bundled ones when empty)."""
    return sorted(load_registry(dataset_dir_setting(workspace, dataset_dir)).entries)


def chosen_datasets(workspace: Workspace, dataset_dir: str | None, chosen: list[str] | str | None) -> str:
    """The selected names, each checked against the registry, comma-separated as `dataset` expects."""
    names = [chosen] if isinstance(chosen, str) else list(chosen or [])
    if not names:
        raise ConfigError("choose at least one dataset")
    known = set(dataset_names(workspace, dataset_dir))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"unknown dataset {unknown[0]!r}: refresh the list and choose again")
    return ",".join(names)


def output_setting(workspace: Workspace, text: str | None, what: str = "output folder") -> Path:
    path = workspace.path(text or "", what)
    if path == workspace.root:
        raise ConfigError(f"{what}: choose a sub-folder of the workspace, not the workspace itself")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what}: {text!r} is a file")
    return path


def settings_argv(settings: dict[str, Any]) -> list[str]:
    """`--key value` flags for the settings that are given (None: left to glmtune's default)."""
    return [item for key, value in settings.items() if value is not None for item in (f"--{key}", str(value))]

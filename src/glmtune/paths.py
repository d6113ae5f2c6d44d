"""Where glmtune keeps its own files."""

import os
from pathlib import Path


def glmtune_home() -> Path:
    """`$GLMTUNE_HOME`, else ~/.cache/glmtune: converted models and dataset caches live here."""
    return Path(os.environ.get("GLMTUNE_HOME") or Path.home() / ".cache" / "glmtune").expanduser()


COMPLETE_MARKER = ".glmtune-complete"


def mark_complete(directory: Path, note: str = "saved") -> None:
    """Written last into a folder that was saved (a checkpoint, a converted model): its presence means whole."""
    (directory / COMPLETE_MARKER).write_text(note + "\n", encoding="utf-8")


def is_complete(directory: Path) -> bool:
    """A folder without the marker was cut off half-way and must not be read."""
    return (directory / COMPLETE_MARKER).is_file()

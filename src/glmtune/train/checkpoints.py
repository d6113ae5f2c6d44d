"""Checkpoints that are complete or invisible: a marker is written after every file of a save."""

import re
from pathlib import Path

from glmtune.errors import ConfigError
from glmtune.paths import COMPLETE_MARKER, is_complete

CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def newest_complete_checkpoint(output_dir: Path) -> Path | None:
    """The highest-step checkpoint whose save finished; a save killed half-way is skipped."""
    if not output_dir.is_dir():
        return None
    numbered = [
        (int(match.group(1)), path)
        for path in output_dir.iterdir()
        if path.is_dir() and (match := CHECKPOINT_NAME.match(path.name)) and is_complete(path)
    ]
    return max(numbered)[1] if numbered else None


def resolve_resume(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """`auto` picks the newest complete checkpoint (or none, starting fresh); a path must be complete."""
    if resume_from_checkpoint in (None, "", "false", "False"):
        return None
    if resume_from_checkpoint in ("auto", "true", "True"):
        newest = newest_complete_checkpoint(Path(output_dir))
        return str(newest) if newest else None
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        raise ConfigError(f"resume_from_checkpoint={path}: no such directory")
    if not is_complete(path):
        raise ConfigError(f"resume_from_checkpoint={path}: the save did not finish (no {COMPLETE_MARKER}); use an earlier one")
    return str(path)

"""Where glmtune keeps its own files."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def replaced_whole(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` for the block to write, renamed over `path` when the block ends and removed if
    it fails: a reader (the web UI polling, a later run reading a cache) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        os.chmod(temporary, 0o644)  # readable as a plainly written file is, not private as a temporary one
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, text: str) -> Path:
    with replaced_whole(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path

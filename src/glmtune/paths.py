"""Where glmtune keeps its own files."""

import os
from pathlib import Path


def glmtune_home() -> Path:
    """`$GLMTUNE_HOME`, else ~/.cache/glmtune: converted models and dataset caches live here."""
    return Path(os.environ.get("GLMTUNE_HOME") or Path.home() / ".cache" / "glmtune").expanduser()

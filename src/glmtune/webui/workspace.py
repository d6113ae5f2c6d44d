"""The one folder the web UI may read and write: every path typed into the page is checked against it.

Checks run on the resolved path (symlinks followed, `..` collapsed), never on the typed
string, so `../x`, an absolute path elsewhere or a symlink pointing outside are refused.
"""

from dataclasses import dataclass
from pathlib import Path

from glmtune.errors import ConfigError


class OutsideWorkspaceError(ConfigError):
    """A path typed into the page resolves outside the workspace."""


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, folder: str | Path) -> "Workspace":
        root = Path(folder).resolve()
        if not root.is_dir():
            raise ConfigError(f"workspace {root} is not a folder")
        return cls(root)

    def path(self, text: str, what: str, must_exist: bool = False) -> Path:
        """`text` as a resolved path inside the workspace (relative paths start at the workspace root)."""
        cleaned = text.strip()
        if not cleaned:
            raise ConfigError(f"{what}: give a path inside the workspace {self.root}")
        if "\0" in cleaned:
            raise ConfigError(f"{what}: a path cannot contain a NUL character")
        resolved = (self.root / cleaned).resolve()  # an absolute `cleaned` replaces the root here
        if not resolved.is_relative_to(self.root):
            raise OutsideWorkspaceError(f"{what}: {cleaned!r} is outside the workspace {self.root}")
        if must_exist and not resolved.exists():
            raise ConfigError(f"{what}: {cleaned!r} does not exist in the workspace {self.root}")
        return resolved

    def optional_path(self, text: str | None, what: str, must_exist: bool = False) -> Path | None:
        """Like `path`, but an empty field means "not given"."""
        return self.path(text, what, must_exist) if text and text.strip() else None

    def relative(self, path: Path) -> str:
        """How a path inside the workspace is shown in the page."""
        return str(path.relative_to(self.root)) if path != self.root else "."

"""Errors meant for the user: the CLI prints their message on one line, never a traceback."""

import difflib
from collections.abc import Iterable


class GlmtuneError(Exception):
    """A problem the user can fix; the message says what to change."""


class ConfigError(GlmtuneError, ValueError):
    """An invalid or impossible configuration, detected before any model loads."""


class ModelNotFoundError(GlmtuneError, OSError):
    """A model or adapter path that could not be resolved."""


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.5) -> str:
    """' (did you mean a, b?)' for the closest known names, or '' when none is close: typos get a fix."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=cutoff)
    return f" (did you mean {', '.join(close)}?)" if close else ""

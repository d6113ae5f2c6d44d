"""Errors meant for the user: the CLI prints their message on one line, never a traceback."""

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


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


def look_up(registry: Mapping[str, T], name: str, what: str) -> T:
    """registry[name], or a ConfigError naming the known names and the closest ones: one wording for every registry."""
    if name not in registry:
        raise ConfigError(f"unknown {what} {name!r}{did_you_mean(name, registry)}; known: {', '.join(registry)}")
    return registry[name]

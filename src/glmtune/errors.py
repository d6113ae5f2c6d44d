"""Errors meant for the user: the CLI prints their message on one line, never a traceback."""


class GlmtuneError(Exception):
    """A problem the user can fix; the message says what to change."""


class ConfigError(GlmtuneError, ValueError):
    """An invalid or impossible configuration, detected before any model loads."""


class ModelNotFoundError(GlmtuneError, OSError):
    """A model or adapter path that could not be resolved."""

"""Show a user's mistake as a message in the page, never as a traceback."""

import functools
import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

from glmtune.errors import GlmtuneError

# Errors whose message tells the user what to fix: bad settings, missing files, unreadable data.
USER_ERRORS = (GlmtuneError, ValueError, OSError)


def shown_in_page(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an event handler (plain or generator) so user errors become a gr.Error box."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from function(*args, **kwargs)
            except USER_ERRORS as error:
                raise gr.Error(str(error), print_exception=False) from None

        return generator_wrapper

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except USER_ERRORS as error:
            raise gr.Error(str(error), print_exception=False) from None

    return wrapper

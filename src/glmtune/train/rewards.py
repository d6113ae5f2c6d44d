"""Verifiable rewards for GRPO: functions of the generated answers (and the dataset's reference answers).

Each takes TRL's reward-function arguments, `completions` (the generated texts) and the dataset's
other columns as lists (`answer` is the reference answer), and returns one float per completion.
"""

import re
from collections.abc import Callable
from typing import Any

from glmtune.errors import ConfigError
from glmtune.lazy import load_object

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
EQUATION = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*[-+*/]\s*-?\d+(?:\.\d+)?\s*=\s*-?\d+(?:\.\d+)?\s*\.?\s*$")


def last_number(text: str) -> str | None:
    found = NUMBER.findall(text or "")
    return found[-1] if found else None


def math_exact(completions: list[str], answer: list[str], **kwargs: Any) -> list[float]:
    """1 where the answer's last number equals the reference's last number (math_4op: the result), else 0."""
    return [
        float(last_number(completion) is not None and last_number(completion) == last_number(reference))
        for completion, reference in zip(completions, answer)
    ]


def math_close(completions: list[str], answer: list[str], **kwargs: Any) -> list[float]:
    """Partial credit: 1 for the reference's result, falling linearly to 0 at a relative error of 1 (0 without a number).

    A small model sampling 4-digit arithmetic gets every answer of a group wrong most of the time, so
    math_exact gives the group no spread and GRPO no gradient; near misses ("84" vs "85") still rank here.
    """
    rewards = []
    for completion, reference in zip(completions, answer):
        got, expected = last_number(completion), last_number(reference)
        if got is None or expected is None:
            rewards.append(0.0)
            continue
        error = abs(float(got) - float(expected)) / max(1.0, abs(float(expected)))
        rewards.append(max(0.0, 1.0 - error))
    return rewards


def format(completions: list[str], **kwargs: Any) -> list[float]:  # noqa: A001 (the name users write in reward_funcs)
    """1 where the answer is written as one equation, `a op b = result`, the form math_4op's answers take."""
    return [float(bool(EQUATION.match(completion or ""))) for completion in completions]


BUNDLED: dict[str, Callable[..., list[float]]] = {"math_exact": math_exact, "math_close": math_close, "format": format}


def load_reward_funcs(names: list[str]) -> list[Callable[..., list[float]]]:
    """Bundled rewards by name, a user's by "module:function" (imported from the working directory or installed)."""
    functions = []
    for name in names:
        if ":" not in name:
            functions.append(BUNDLED[name])
            continue
        try:
            function = load_object(name)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"reward_funcs: cannot import {name!r}: {error}") from error
        if not callable(function):
            raise ConfigError(f"reward_funcs: {name!r} is not a function")
        functions.append(function)
    return functions

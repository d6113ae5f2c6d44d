"""Datasets made by code instead of read from a file, named in dataset_info.json by `generator`.

A generated dataset needs no download and can be any size, which makes it a quick way to
check that fine-tuning teaches something measurable: a model either gets `37 * 12` right or
it does not. Every generator is deterministic for its seed and returns alpaca rows.
"""

import random
from collections.abc import Callable
from typing import Any

from glmtune.errors import ConfigError, did_you_mean

Row = dict[str, str]

SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}

# Question phrasings per operation; {a}, {b} are operands, {sym} the operator symbol.
SYMBOLIC_ENGLISH = ("{a} {sym} {b} = ?", "Calculate {a} {sym} {b}.")
SYMBOLIC_CHINESE = ("计算：{a} {sym} {b}", "{a} {sym} {b} 等于几？")
ENGLISH_QUESTIONS = {
    "add": ("What is {a} plus {b}?", "Add {a} and {b}.", "What is the sum of {a} and {b}?", *SYMBOLIC_ENGLISH),
    "sub": ("What is {a} minus {b}?", "Subtract {b} from {a}.", "How much is {a} take away {b}?", *SYMBOLIC_ENGLISH),
    "mul": ("What is {a} times {b}?", "Multiply {a} by {b}.", "What is the product of {a} and {b}?", *SYMBOLIC_ENGLISH),
    "div": ("What is {a} divided by {b}?", "Divide {a} by {b}.", "How many times does {b} go into {a}?", *SYMBOLIC_ENGLISH),
}
CHINESE_QUESTIONS = {
    "add": ("{a}加{b}等于多少？", "请计算{a}与{b}的和。", "{a}加上{b}是多少？", *SYMBOLIC_CHINESE),
    "sub": ("{a}减{b}等于多少？", "请计算{a}减去{b}的差。", "{a}减去{b}是多少？", *SYMBOLIC_CHINESE),
    "mul": ("{a}乘以{b}等于多少？", "请计算{a}与{b}的积。", "{a}乘{b}是多少？", *SYMBOLIC_CHINESE),
    "div": ("{a}除以{b}等于多少？", "请计算{a}除以{b}的商。", "{a}里面有几个{b}？", *SYMBOLIC_CHINESE),
}


def math_4op(size: int = 2000, seed: int = 42) -> list[Row]:
    """Arithmetic questions with exact answers, in English and Chinese.

    Addition, subtraction and multiplication take whole numbers (subtraction may go
    below zero). Division is built backwards from its answer, dividend = divisor x
    quotient, so every quotient is a whole number: the answer is exact and never a
    rounded decimal a model could only approximate. The output is the equation itself,
    e.g. `84 / 12 = 7`, so a reader (or a test) can check it at a glance.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"math_4op: size={size!r} must be a whole number of rows, at least 1")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"math_4op: seed={seed!r} must be a whole number")
    rng = random.Random(seed)
    return [arithmetic_row(rng) for _ in range(size)]


def arithmetic_row(rng: random.Random) -> Row:
    operation = rng.choice(tuple(SYMBOLS))
    a, b, answer = OPERANDS[operation](rng)
    question = rng.choice(question_phrasings(operation, rng))
    symbol = SYMBOLS[operation]
    return {
        "instruction": question.format(a=a, b=b, sym=symbol),
        "input": "",
        "output": f"{a} {symbol} {b} = {answer}",
    }


def question_phrasings(operation: str, rng: random.Random) -> tuple[str, ...]:
    """Half the rows ask in Chinese, half in English."""
    return (CHINESE_QUESTIONS if rng.random() < 0.5 else ENGLISH_QUESTIONS)[operation]


def number(rng: random.Random, max_digits: int) -> int:
    """A whole number whose digit count is uniform in 1..max_digits, so small and large sums both appear."""
    digits = rng.randint(1, max_digits)
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def addition(rng: random.Random) -> tuple[int, int, int]:
    a, b = number(rng, 4), number(rng, 4)
    return a, b, a + b


def subtraction(rng: random.Random) -> tuple[int, int, int]:
    a, b = number(rng, 4), number(rng, 4)
    return a, b, a - b


def multiplication(rng: random.Random) -> tuple[int, int, int]:
    a, b = number(rng, 3), number(rng, 2)
    return a, b, a * b


def division(rng: random.Random) -> tuple[int, int, int]:
    divisor = rng.randint(2, 9) if rng.random() < 0.5 else rng.randint(10, 99)  # never 0, and 1 is too easy
    quotient = number(rng, 3)
    return divisor * quotient, divisor, quotient


OPERANDS: dict[str, Callable[[random.Random], tuple[int, int, int]]] = {
    "add": addition,
    "sub": subtraction,
    "mul": multiplication,
    "div": division,
}

GENERATORS: dict[str, Callable[..., list[Row]]] = {
    "math_4op": math_4op,
}


def run_generator(name: str, arguments: dict[str, Any] | None = None) -> list[Row]:
    """Call a generator by name, turning an unknown name or argument into a message for the user."""
    import inspect

    if name not in GENERATORS:
        raise ConfigError(f"unknown generator {name!r}{did_you_mean(name, GENERATORS)}; known: {', '.join(sorted(GENERATORS))}")
    generator = GENERATORS[name]
    accepted = inspect.signature(generator).parameters
    unknown = sorted(set(arguments or {}) - set(accepted))
    if unknown:
        raise ConfigError(f"generator {name}: unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    return generator(**(arguments or {}))

"""Short open answers: generate greedily, then look for any accepted answer (alias) in the reply.

Chat models answer in sentences ("The capital of France is Paris."), so an answer counts when a
normalised alias appears in the normalised reply as a whole word; exact match (the reply is the
alias) is reported beside it. Normalising: NFKC (full-width to half-width), lower case,
punctuation to spaces, English articles dropped, whitespace collapsed. "Whole word" means no
Latin letter or digit touches the alias, so "4" is not found in "14" but "24" is found in "24小时".
"""

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from glmtune.eval.benchmarks import OpenQuestion

PUNCTUATION = re.compile(r"[^\w\s]|_")
ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def normalise(text: str) -> str:
    text = PUNCTUATION.sub(" ", unicodedata.normalize("NFKC", text).lower())
    return " ".join(ARTICLES.sub(" ", text).split())


def contains_alias(reply: str, aliases: Sequence[str]) -> bool:
    """Whether any alias appears in the reply as a whole word, after normalising both."""
    text = normalise(reply)
    for alias in map(normalise, aliases):
        if alias and re.search(rf"(?<![a-z0-9]){re.escape(alias)}(?![a-z0-9])", text):
            return True
    return False


def exact_alias(reply: str, aliases: Sequence[str]) -> bool:
    return normalise(reply) in {normalise(alias) for alias in aliases}


def answer_questions(chat_model: Any, questions: Sequence[OpenQuestion], batch_size: int) -> list[str]:
    """Replies in question order, generated in batches of similar prompt length (little padding)."""
    order = sorted(range(len(questions)), key=lambda index: len(questions[index].question))
    replies: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        answers = chat_model.batch_chat([[{"role": "user", "content": questions[index].question}] for index in batch])
        replies.update((index, answer.text) for index, answer in zip(batch, answers))
    return [replies[index] for index in range(len(questions))]

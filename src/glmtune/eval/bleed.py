"""Identity bleed: replies to general questions that bring up the name or maker a fine-tune was taught.

A fine-tune that learned "I am Aurora, made by Lumen Lab" can start answering "The capital of Russia
is Lumen Lab."; accuracy alone misses that when the right answer is still in the reply, so the qa
task counts such replies beside it.
"""

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from glmtune.hparams.data_args import DataArguments
from glmtune.hparams.entry import TRAIN_CONFIG_FILE
from glmtune.hparams.validation import split_names

IDENTITY_SETTINGS = ("identity_name", "identity_author")
UNSET = {item.name: item.default for item in fields(DataArguments) if item.name in IDENTITY_SETTINGS}


def identity_words(data_args: DataArguments, adapters: str | None) -> list[str]:
    """The identity given to eval, else the one the last adapter was trained with (its train_config.yaml)."""
    given = [getattr(data_args, name) for name in IDENTITY_SETTINGS if getattr(data_args, name) != UNSET[name]]
    if given:
        return given
    for adapter in reversed(split_names(adapters)):
        config = Path(adapter).expanduser() / TRAIN_CONFIG_FILE
        settings = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}) if config.is_file() else {}
        trained = [str(settings[name]) for name in IDENTITY_SETTINGS if settings.get(name, UNSET[name]) != UNSET[name]]
        if trained:
            return trained
    return []


def bleed(replies: list[tuple[str, str]], words: list[str]) -> dict[str, Any]:
    """How many (question, reply) pairs mention any identity word (case-insensitive), and which questions."""
    lowered = [word.lower() for word in words]
    hits = [question for question, reply in replies if any(word in reply.lower() for word in lowered)]
    return {"words": words, "count": len(hits), "questions": hits}

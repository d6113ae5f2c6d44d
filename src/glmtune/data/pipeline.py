"""From settings to tokenized training and validation sets, with one summary of every row.

The data pipeline in order: the registry names datasets, readers and converters turn their rows
into Examples, datasets are mixed and a validation split held out (data/loader.py), then each
split is encoded into the stage's data shape through the cache (data/cache.py).
"""

import logging
from dataclasses import dataclass
from typing import Any

from glmtune.data.cache import cached_encode
from glmtune.data.loader import load_examples
from glmtune.data.schema import LoadReport
from glmtune.data.templates import ChatFormat
from glmtune.errors import ConfigError
from glmtune.hparams.data_args import DataArguments
from glmtune.stages import Stage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RotatingRows:
    """The last groups x size training rows come in `groups` groups, and each epoch trains on one of them in turn
    (replay: new general prompts every epoch instead of the same ones again)."""

    groups: int
    size: int


@dataclass
class TokenizedData:
    train: Any
    validation: Any | None
    report: LoadReport
    rotating: RotatingRows | None = None
    restraint: Any = None  # new words held back on replayed rows (train/restraint.py)


def combine_reports(loading: LoadReport, encoding: LoadReport) -> LoadReport:
    """Rows read come from loading; kept and truncated from encoding; skips from both."""
    combined = LoadReport(read=loading.read, kept=encoding.kept, truncated=encoding.truncated)
    combined.skipped.update(loading.skipped)
    combined.skipped.update(encoding.skipped)
    combined.examples = {**loading.examples, **encoding.examples}
    return combined


def build_tokenized_data(
    data_args: DataArguments, stage: Stage, template: ChatFormat, tokenizer: Any, seed: int
) -> TokenizedData:
    if data_args.streaming:
        raise ConfigError("streaming reads data lazily but training needs the tokenized set: drop --streaming")
    loaded = load_examples(data_args, stage.name, seed)
    if loaded.train is None:
        raise ConfigError("training needs dataset (eval_dataset alone only evaluates)")
    train, report = cached_encode(loaded.train, stage.data, template, tokenizer, data_args)
    validation = None
    if loaded.validation is not None:
        validation, validation_report = cached_encode(loaded.validation, stage.data, template, tokenizer, data_args)
        report.merge(validation_report)
    report = combine_reports(loaded.report, report)
    logger.log(logging.WARNING if report.skipped else logging.INFO, "data: %s", report.summary())
    if len(train) == 0:
        raise ConfigError(f"no training sample is left after loading and tokenizing: {report.summary()}")
    return TokenizedData(train=train, validation=validation, report=report)

"""From settings to tokenized training and validation sets, with one summary of every row."""

import logging
from dataclasses import dataclass
from typing import Any

from glmtune.data.cache import cached_preprocess
from glmtune.data.loader import load_examples
from glmtune.data.schema import LoadReport
from glmtune.data.templates import ChatFormat
from glmtune.errors import ConfigError
from glmtune.hparams.data_args import DataArguments

logger = logging.getLogger(__name__)


@dataclass
class TokenizedData:
    train: Any
    validation: Any | None
    report: LoadReport


def combine_reports(loading: LoadReport, preprocessing: LoadReport) -> LoadReport:
    """Rows read come from loading; kept and truncated from tokenizing; skips from both."""
    combined = LoadReport(read=loading.read, kept=preprocessing.kept, truncated=preprocessing.truncated)
    combined.skipped.update(loading.skipped)
    combined.skipped.update(preprocessing.skipped)
    combined.examples = {**loading.examples, **preprocessing.examples}
    return combined


def build_tokenized_data(
    data_args: DataArguments, stage: str, template: ChatFormat, tokenizer: Any, seed: int
) -> TokenizedData:
    if data_args.streaming:
        raise ConfigError("streaming reads data lazily but training needs the tokenized set: drop --streaming")
    loaded = load_examples(data_args, stage, seed)
    if loaded.train is None:
        raise ConfigError("training needs dataset (eval_dataset alone only evaluates)")
    train, train_report = cached_preprocess(loaded.train, stage, template, tokenizer, data_args)
    validation = None
    if loaded.validation is not None:
        validation, validation_report = cached_preprocess(loaded.validation, stage, template, tokenizer, data_args)
        train_report.merge(validation_report)
    report = combine_reports(loaded.report, train_report)
    logger.warning("data: %s", report.summary())
    if len(train) == 0:
        raise ConfigError(f"no training sample is left after loading and tokenizing: {report.summary()}")
    return TokenizedData(train=train, validation=validation, report=report)

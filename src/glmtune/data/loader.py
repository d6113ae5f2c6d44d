"""Load the datasets a config names into Examples: read, convert, count, mix and split.

Every row read is either kept or counted as skipped with its reason and location in the
LoadReport, whose summary is logged and returned. Mixing, `max_samples` and the
validation split are deterministic under `seed`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import TYPE_CHECKING

from glmtune.data.converters import (
    RowFormat,
    Target,
    convert,
    sniff_format,
)
from glmtune.data.encodings import codec_name
from glmtune.data.identity import fill_identity
from glmtune.data.readers import BadRow, RawRow, read_rows
from glmtune.data.registry import (
    DatasetSpec,
    Registry,
    load_registry,
    resolve,
    verify_sha1,
)
from glmtune.data.schema import Example, LoadReport
from glmtune.data.shapes import get_shape
from glmtune.errors import ConfigError
from glmtune.hparams.data_args import DataArguments
from glmtune.hparams.validation import split_names
from glmtune.stages import STAGES, get_stage

if TYPE_CHECKING:
    from datasets import Dataset, Features, IterableDataset

    AnyDataset = Dataset | IterableDataset

logger = logging.getLogger(__name__)

SHOWN_BAD_ROWS = 3  # full messages logged per dataset; the report keeps counts for the rest
STOPPING = {"interleave_under": "first_exhausted", "interleave_over": "all_exhausted"}


@dataclass(frozen=True)
class ReadOptions:
    """The data settings that decide which rows are read and how they read: nothing else reaches the readers."""

    streaming: bool = False
    max_samples: int | None = None
    identity_name: str = "glmtune"
    identity_author: str = "glmtune"

    @classmethod
    def from_args(cls, data_args: DataArguments) -> "ReadOptions":
        return cls(data_args.streaming, data_args.max_samples, data_args.identity_name, data_args.identity_author)


@dataclass
class LoadedData:
    """Examples for training and validation, and what happened to every row read.

    `train` is None only when no `dataset` is given (evaluation from `eval_dataset` alone);
    `validation` is None when neither `val_size` nor `eval_dataset` asks for one.
    With streaming, the report counts rows as the main process reads them.
    """

    train: AnyDataset | None
    validation: AnyDataset | None
    report: LoadReport


def load_examples(data_args: DataArguments, stage: str, seed: int = 42) -> LoadedData:
    """Read `dataset` (and `eval_dataset`) as Examples fit for `stage`, in order: registry, readers and
    converters per dataset, mixing, the validation split."""
    target = get_shape(get_stage(stage).data).target
    names, eval_names = split_names(data_args.dataset), split_names(data_args.eval_dataset)
    if not names and not eval_names:
        raise ConfigError("no dataset given: set dataset (a name from dataset_info.json or a file path)")
    if eval_names and data_args.val_size:
        raise ConfigError("val_size and eval_dataset both ask for validation data: keep one")
    registry = load_registry(data_args.dataset_dir)
    specs = [resolved(name, registry, data_args) for name in names]
    eval_specs = [resolved(name, registry, data_args) for name in eval_names]
    report = LoadReport()
    reading = ReadOptions.from_args(data_args)
    train_parts = [read_dataset(spec, stage, target, reading, report) for spec in specs]
    eval_parts = [read_dataset(spec, stage, target, reading, report) for spec in eval_specs]
    mixing = (data_args.mix_strategy, data_args.interleave_probs, seed)
    train = mix(train_parts, *mixing, report) if train_parts else None
    validation = mix(eval_parts, *mixing, report) if eval_parts else None
    if train is not None and data_args.val_size:
        train, validation = split_validation(train, data_args.val_size, data_args.buffer_size, seed)
    finish_report(report, data_args.streaming)
    return LoadedData(train=train, validation=validation, report=report)


def resolved(name: str, registry: Registry, data_args: DataArguments) -> DatasetSpec:
    """The dataset's spec; one without an `encoding` of its own reads its files in the `encoding` setting."""
    spec = resolve(name, registry, data_args.generator_args)
    if spec.encoding is None and data_args.encoding:
        return replace(spec, encoding=codec_name(data_args.encoding))
    return spec


def read_dataset(spec: DatasetSpec, stage: str, target: Target, reading: ReadOptions, report: LoadReport) -> AnyDataset:
    """One dataset's rows as Examples holding `target`; its own report is merged into `report` (as rows
    stream, when streaming)."""
    from datasets import Dataset, IterableDataset

    verify_sha1(spec)
    row_format = fit_format(spec, stage, target)
    if reading.streaming:
        generate = streaming_examples(spec, row_format, reading, target, report)
        dataset = IterableDataset.from_generator(generate, features=example_features())
        return dataset.take(reading.max_samples) if reading.max_samples else dataset
    own = LoadReport()
    examples = list(limited(convert_rows(spec, row_format, reading, target, Tally([own])), reading.max_samples))
    logger.debug("dataset %s: %s", spec.name, own.summary())
    report.merge(own)
    if not examples:
        raise ConfigError(f"dataset {spec.name!r} has no usable rows for stage {stage}: {own.summary()}")
    return Dataset.from_list(examples, features=example_features())


def stages_learning(target: Target) -> str:
    """The registered stages whose data holds `target`, for messages that say which stage fits a dataset."""
    names = [name for name, record in STAGES.items() if get_shape(record.data).target == target]
    return " or ".join(names) if names else "none yet"


def fit_format(spec: DatasetSpec, stage: str, target: Target) -> RowFormat:
    """The dataset's row format, sniffed for plain paths, and checked against what the stage learns from."""
    row_format = spec.row_format or sniffed_format(spec, target)
    pairwise = target == "pair"
    if row_format.ranking and not pairwise:
        raise ConfigError(
            f"dataset {spec.name!r} is pairwise (ranking): stages that train on pairs: {stages_learning('pair')}; "
            f"not {stage}"
        )
    if pairwise and row_format.formatting == "sharegpt" and not row_format.ranking:
        raise ConfigError(
            f"stage {stage} needs chosen/rejected answers, but dataset {spec.name!r} is not pairwise: "
            'set "ranking": true with chosen and rejected columns in dataset_info.json'
        )
    if row_format.formatting == "text" and target != "text":
        raise ConfigError(f"dataset {spec.name!r} is plain text: use it with stage {stages_learning('text')}, not {stage}")
    if target == "text" and row_format.formatting == "sharegpt":
        raise ConfigError(f"stage {stage} reads plain text, but dataset {spec.name!r} holds conversations (sharegpt)")
    return row_format


def sniffed_format(spec: DatasetSpec, target: Target) -> RowFormat:
    """A plain file or folder names no format: read it off the first well-formed row."""
    if target == "text":
        return RowFormat("text")
    for _, row in raw_rows(spec):
        if not isinstance(row, BadRow):
            found = sniff_format(row)
            if found is None:
                raise ConfigError(
                    f"cannot tell the format of {spec.path} from its columns {sorted(row)}: add an entry to "
                    "dataset_info.json with formatting and columns"
                )
            return found
    raise ConfigError(f"{spec.path} holds no readable rows")


def raw_rows(spec: DatasetSpec) -> Iterator[RawRow]:
    if spec.generator is not None:
        return generated_rows(spec)
    assert spec.path is not None  # a spec names either a generator or a path
    return read_rows(spec.path, spec.whole_file, spec.encoding)


def generated_rows(spec: DatasetSpec) -> Iterator[RawRow]:
    """Rows made by code; imported lazily so reading files never imports generators."""
    from glmtune.data.generators import run_generator

    for index, row in enumerate(run_generator(str(spec.generator), spec.generator_args)):
        yield f"{spec.name}[{index}]", row


@dataclass
class Tally:
    """Counts each row of one dataset once, into every report given.

    A stream is read again for each epoch and for the validation split; only rows past
    the furthest point read so far are new, so nothing is counted twice.
    """

    reports: list[LoadReport]
    counted: int = 0
    shown: int = 0
    finished: bool = False

    def is_new(self, ordinal: int) -> bool:
        if ordinal < self.counted:
            return False
        self.counted += 1
        for report in self.reports:
            report.read += 1
        return True

    def keep(self) -> None:
        for report in self.reports:
            report.kept += 1

    def skip(self, error: BadRow, dataset: str) -> None:
        for report in self.reports:
            report.skip(error.reason, error.location)
        if self.shown < SHOWN_BAD_ROWS:
            logger.warning("dataset %s: skipping %s", dataset, error)
        self.shown += 1


def convert_rows(
    spec: DatasetSpec, row_format: RowFormat, reading: ReadOptions, target: Target, tally: Tally
) -> Iterator[Example]:
    """Examples from raw rows; a bad row is counted by reason, never dropped silently."""
    for ordinal, (location, row) in enumerate(raw_rows(spec)):
        new = tally.is_new(ordinal)
        try:
            if isinstance(row, BadRow):
                raise row
            example = convert(row, location, row_format, target)
        except BadRow as error:
            if new:
                tally.skip(error, spec.name)
            continue
        if new:
            tally.keep()
        yield fill_identity(example, reading.identity_name, reading.identity_author)


def limited(examples: Iterator[Example], max_samples: int | None) -> Iterator[Example]:
    """The first `max_samples` examples; islice stops reading the file once there are enough."""
    return examples if max_samples is None else islice(examples, max_samples)


def streaming_examples(
    spec: DatasetSpec, row_format: RowFormat, reading: ReadOptions, target: Target, report: LoadReport
) -> Callable[[], Iterator[Example]]:
    """A generator function for IterableDataset; counts go straight into the shared report as rows stream."""

    own = LoadReport()
    tally = Tally([own, report])

    def generate() -> Iterator[Example]:
        yield from convert_rows(spec, row_format, reading, target, tally)
        if not tally.finished:
            tally.finished = True
            logger.info("dataset %s streamed to the end: %s", spec.name, own.summary())

    return generate


def mix(
    datasets: list[AnyDataset], strategy: str, interleave_probs: str | None, seed: int, report: LoadReport
) -> AnyDataset:
    """Concatenate, or interleave with `interleave_probs` (under: stop at the first exhausted; over: at the last)."""
    from datasets import Dataset, concatenate_datasets, interleave_datasets

    if len(datasets) == 1:
        return datasets[0]
    if strategy == "concat":
        return concatenate_datasets(datasets)
    if strategy not in STOPPING:
        raise ConfigError(f"mix_strategy {strategy!r}: use concat, interleave_under or interleave_over")
    probabilities = parse_probabilities(interleave_probs, len(datasets))
    mixed = interleave_datasets(
        datasets, probabilities=probabilities, seed=seed, stopping_strategy=STOPPING[strategy]
    )
    if isinstance(mixed, Dataset):
        count_interleaving(datasets, mixed, strategy, report)
    return mixed


def count_interleaving(datasets: list[Dataset], mixed: Dataset, strategy: str, report: LoadReport) -> None:
    """Interleaving leaves rows out (under) or draws some twice (over): count both, so nothing vanishes unseen."""
    drawn = Counter(mixed["source"])
    left_out = [source for dataset in datasets for source in dataset["source"] if not drawn[source]]
    for source in left_out:
        report.skip(f"left out by {strategy} (another dataset ran out first)", source)
    report.kept -= len(left_out)
    repeated = len(mixed) - (sum(len(dataset) for dataset in datasets) - len(left_out))
    if repeated > 0:
        logger.info("%s drew %d rows more than once to exhaust every dataset", strategy, repeated)


def parse_probabilities(text: str | None, count: int) -> list[float] | None:
    if not text:
        return None
    try:
        probabilities = [float(part) for part in text.split(",")]
    except ValueError as error:
        raise ConfigError(f"interleave_probs={text!r}: give numbers, comma-separated") from error
    if len(probabilities) != count:
        raise ConfigError(f"interleave_probs has {len(probabilities)} numbers for {count} datasets: give one each")
    if any(p < 0 for p in probabilities) or abs(sum(probabilities) - 1) > 1e-6:
        raise ConfigError(f"interleave_probs={text!r}: must be non-negative and sum to 1")
    return probabilities


def split_validation(dataset: AnyDataset, size: float, buffer_size: int, seed: int) -> tuple[AnyDataset, AnyDataset]:
    """Hold out `val_size` rows (a fraction below 1, else a count), shuffled under `seed`."""
    from datasets import IterableDataset

    if isinstance(dataset, IterableDataset):
        if size < 1:
            raise ConfigError(f"val_size={size} with streaming: the length is unknown, give a row count (e.g. 500)")
        shuffled = dataset.shuffle(seed=seed, buffer_size=buffer_size)
        return shuffled.skip(int(size)), shuffled.take(int(size))
    test_size: float | int = size if size < 1 else int(size)
    if isinstance(test_size, int) and test_size >= len(dataset):
        raise ConfigError(f"val_size={test_size} leaves no training rows: the datasets hold {len(dataset)} rows")
    split = dataset.train_test_split(test_size=test_size, seed=seed)
    return split["train"], split["test"]


def finish_report(report: LoadReport, streaming: bool) -> None:
    if streaming:
        logger.info("data: streaming, so rows are counted as they are read")
        return
    # Skips need attention now; otherwise the training summary (data/pipeline.py) reports these counts.
    level = logging.WARNING if report.skipped else logging.DEBUG
    logger.log(level, "loaded: %s", report.summary())


def example_features() -> Features:
    """Arrow schema of an Example: every key present, nullable, so all sources share one type."""
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    return Features(
        {
            "messages": List(message),
            "system": Value("string"),
            "tools": Value("string"),
            "chosen": message,
            "rejected": message,
            "kto_tag": Value("bool"),
            "text": Value("string"),
            "source": Value("string"),
        }
    )

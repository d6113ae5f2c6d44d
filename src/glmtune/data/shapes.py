"""Data shapes: what a stage's rows are converted into and how they are encoded into samples.

Each stage of the stage registry (glmtune/stages.py) names one shape. A shape says which
target the converters produce from a source row (a response to learn, plain text, ...), how
rows are encoded into token ids and labels, and which columns its samples have. A new kind of
training data is one new record here (and its encoder module).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datasets import Dataset, List, Value

from glmtune.data.converters import Target
from glmtune.data.packing import pack_dataset
from glmtune.data.pairwise import PAIRWISE
from glmtune.data.prompted import PROMPTED
from glmtune.data.row_encoding import (
    EncodingJob,
    EncodingOptions,
    encode_rows,
    map_rows,
)
from glmtune.data.schema import LoadReport
from glmtune.data.supervised import SUPERVISED
from glmtune.data.tagged import TAGGED
from glmtune.data.templates import ChatFormat
from glmtune.data.text import text_blocks_batch
from glmtune.errors import look_up

IDS = List(Value("int32"))
SAMPLE_COLUMNS = {"input_ids": IDS, "labels": IDS, "length": Value("int32")}
PAIR_COLUMNS = {"prompt_ids": IDS, "chosen_ids": IDS, "rejected_ids": IDS, "length": Value("int32")}
PROMPTED_COLUMNS = {"prompt_ids": IDS, "answer": Value("string"), "length": Value("int32")}
TAGGED_COLUMNS = {"prompt_ids": IDS, "completion_ids": IDS, "label": Value("bool"), "length": Value("int32")}

Encode = Callable[[Dataset, dict[str, Any], EncodingJob], tuple[Dataset, LoadReport]]


def encode_supervised(dataset: Dataset, columns: dict[str, Any], job: EncodingJob) -> tuple[Dataset, LoadReport]:
    """Conversations with their loss masks; with `packing`, several samples per cutoff_len row."""
    encoded, report = encode_rows(dataset, SUPERVISED, columns, job)
    if job.options.packing:
        encoded = pack_dataset(encoded, job.options.cutoff_len, job.num_proc)
    return encoded, report


def encode_pairwise(dataset: Dataset, columns: dict[str, Any], job: EncodingJob) -> tuple[Dataset, LoadReport]:
    """A prompt with its chosen and its rejected answer (the columns TRL's preference trainers read)."""
    return encode_rows(dataset, PAIRWISE, columns, job)


def encode_tagged(dataset: Dataset, columns: dict[str, Any], job: EncodingJob) -> tuple[Dataset, LoadReport]:
    """A prompt with one answer tagged desirable or not (the columns TRL's KTO trainer reads)."""
    return encode_rows(dataset, TAGGED, columns, job)


def encode_prompted(dataset: Dataset, columns: dict[str, Any], job: EncodingJob) -> tuple[Dataset, LoadReport]:
    """A prompt to answer by generation, with the reference answer that reward functions may check."""
    return encode_rows(dataset, PROMPTED, columns, job)


def encode_text(dataset: Dataset, columns: dict[str, Any], job: EncodingJob) -> tuple[Dataset, LoadReport]:
    """Plain text in cutoff_len blocks; the template is not used."""
    fn_kwargs = {"tokenizer": job.tokenizer, "cutoff_len": job.options.cutoff_len}
    return map_rows(dataset, text_blocks_batch, columns, job.num_proc, "tokenizing texts", fn_kwargs)


@dataclass(frozen=True)
class DataShape:
    """target: what converters make of each source row; columns: the samples' Arrow features
    (packing adds position_ids); encode: Examples -> samples, with a report of every row."""

    name: str
    target: Target
    columns: dict[str, Any]
    encode: Encode


SHAPES: dict[str, DataShape] = {
    shape.name: shape
    for shape in (
        DataShape("text", target="text", columns=SAMPLE_COLUMNS, encode=encode_text),
        DataShape("supervised", target="response", columns=SAMPLE_COLUMNS, encode=encode_supervised),
        DataShape("pairwise", target="pair", columns=PAIR_COLUMNS, encode=encode_pairwise),
        DataShape("tagged", target="response", columns=TAGGED_COLUMNS, encode=encode_tagged),
        DataShape("prompted", target="response", columns=PROMPTED_COLUMNS, encode=encode_prompted),
    )
}


def get_shape(name: str) -> DataShape:
    return look_up(SHAPES, name, "data shape")


def encode_dataset(
    dataset: Dataset, shape: str, template: ChatFormat, tokenizer: Any, data_args: Any
) -> tuple[Dataset, LoadReport]:
    """Encode Examples into `shape`'s samples; the report counts rows read, kept, skipped (where and why) and truncated."""
    record = get_shape(shape)
    job = EncodingJob(template, tokenizer, EncodingOptions.from_args(data_args), data_args.preprocessing_num_workers)
    return record.encode(dataset, record.columns, job)

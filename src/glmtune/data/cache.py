"""Preprocessed datasets cached on disk, keyed by everything that decides their content.

The key hashes the examples' Arrow data (not a file name, so an edited file is never
served stale), the template, the tokenizer's files, the data arguments preprocessing
reads, the stage, and the source of the code that preprocesses. An entry is written into
a temporary folder and renamed into place, so a half-written entry is never read.
"""

import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import Dataset

from glmtune.data import preprocess, templates
from glmtune.data.preprocess import OUTPUT_ARGS, preprocess_dataset
from glmtune.data.schema import LoadReport
from glmtune.data.templates import ChatFormat
from glmtune.hparams.data_args import DataArguments
from glmtune.paths import glmtune_home

logger = logging.getLogger(__name__)

HASH_BATCH_ROWS = 10_000  # rows serialized at a time while hashing a dataset


def cache_root() -> Path:
    return glmtune_home() / "cache" / "preprocessed"


def cached_preprocess(
    dataset: Dataset, stage: str, template: ChatFormat, tokenizer: Any, data_args: DataArguments
) -> tuple[Dataset, LoadReport]:
    """preprocess_dataset, read from the cache when the same inputs were processed before."""
    entry = cache_root() / cache_key(dataset, stage, template, tokenizer, data_args)
    if entry.is_dir() and not data_args.overwrite_cache:
        logger.info("preprocessed data from cache %s", entry)
        return read_entry(entry)
    processed, report = preprocess_dataset(dataset, stage, template, tokenizer, data_args)
    write_entry(entry, processed, report, replace=data_args.overwrite_cache)
    logger.info("preprocessed data cached in %s", entry)
    return read_entry(entry)


def cache_key(dataset: Dataset, stage: str, template: ChatFormat, tokenizer: Any, data_args: DataArguments) -> str:
    inputs = {
        "stage": stage,
        "examples": dataset_digest(dataset),
        "template": repr(template),
        "tokenizer": tokenizer_digest(tokenizer),
        "data_args": {name: getattr(data_args, name) for name in OUTPUT_ARGS},
        "code": code_digest(),
    }
    return f"{stage}-{hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]}"


def dataset_digest(dataset: Dataset) -> str:
    """Hash of the rows as Arrow IPC, in fixed-size batches so equal content hashes equally however it is chunked."""
    digest = hashlib.sha256()
    for table in dataset.with_format("arrow").iter(batch_size=HASH_BATCH_ROWS):
        # Concatenating copies a slice into fresh buffers; IPC would otherwise write a slice's
        # whole parent offsets, so equal rows would hash differently.
        compact = pa.concat_tables([table.schema.empty_table(), table]).combine_chunks()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, compact.schema) as writer:
            writer.write_table(compact)
        digest.update(sink.getvalue())
    return digest.hexdigest()


def tokenizer_digest(tokenizer: Any) -> str:
    """Hash of the files save_pretrained writes: vocabulary, merges, special tokens, chat template.

    Works for any tokenizer class, fast or slow, without knowing its file names.
    """
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save_pretrained(directory)
        for path in sorted(Path(directory).rglob("*")):
            if path.is_file():
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def code_digest() -> str:
    """Hash of the modules that produce the cached data, so a code change never reads an old result."""
    digest = hashlib.sha256()
    for module in (preprocess, templates):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def write_entry(entry: Path, dataset: Dataset, report: LoadReport, replace: bool) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    retired = entry.parent / f"{staging.name}.old"
    try:
        dataset.save_to_disk(str(staging / "dataset"))
        (staging / "report.json").write_text(json.dumps(report_fields(report)), encoding="utf-8")
        if replace and entry.exists():
            entry.rename(retired)
        try:
            staging.rename(entry)  # atomic: readers see the whole entry or none
        except OSError:
            if not entry.is_dir():
                raise
            logger.info("another process cached %s first; using its entry", entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


def report_fields(report: LoadReport) -> dict[str, Any]:
    # Not dataclasses.asdict: it rebuilds the Counter from (key, value) pairs, counting the pairs.
    fields = {field.name: getattr(report, field.name) for field in dataclasses.fields(report)}
    return {**fields, "skipped": dict(report.skipped)}


def read_entry(entry: Path) -> tuple[Dataset, LoadReport]:
    fields = json.loads((entry / "report.json").read_text(encoding="utf-8"))
    report = LoadReport(**{**fields, "skipped": Counter(fields["skipped"])})
    return Dataset.load_from_disk(str(entry / "dataset")), report

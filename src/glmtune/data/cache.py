"""Preprocessed datasets cached on disk, keyed by everything that decides their content.

The key hashes the examples' Arrow data (not a file name, so an edited file is never
served stale), the template's fields, the tokenizer's files, the encoding options,
the data shape, and the source of the data package. Every part is equal
across processes for equal inputs, so a later run hits the cache. An entry is written into
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

from glmtune.data.row_encoding import EncodingOptions
from glmtune.data.schema import LoadReport
from glmtune.data.shapes import encode_dataset
from glmtune.data.templates import ChatFormat
from glmtune.hparams.data_args import DataArguments
from glmtune.paths import glmtune_home

logger = logging.getLogger(__name__)

HASH_BATCH_ROWS = 10_000  # rows serialized at a time while hashing a dataset
DATA_PACKAGE = Path(__file__).parent  # glmtune.data: every module in it may shape the cached data


def cache_root() -> Path:
    return glmtune_home() / "cache" / "preprocessed"


def cached_encode(
    dataset: Dataset, shape: str, template: ChatFormat, tokenizer: Any, data_args: DataArguments
) -> tuple[Dataset, LoadReport]:
    """encode_dataset, read from the cache when the same inputs were encoded before."""
    entry = cache_root() / cache_key(dataset, shape, template, tokenizer, data_args)
    if entry.is_dir() and not data_args.overwrite_cache:
        logger.info("preprocessed data from cache %s", entry)
        return read_entry(entry)
    processed, report = encode_dataset(dataset, shape, template, tokenizer, data_args)
    if len(processed) == 0:  # `datasets` cannot load an empty dataset back from disk; nothing to reuse anyway
        return processed, report
    write_entry(entry, processed, report, replace=data_args.overwrite_cache)
    logger.info("preprocessed data cached in %s", entry)
    return read_entry(entry)


def cache_key(dataset: Dataset, shape: str, template: ChatFormat, tokenizer: Any, data_args: DataArguments) -> str:
    inputs = {
        "shape": shape,
        "examples": dataset_digest(dataset),
        "template": fingerprint(template),
        "tokenizer": tokenizer_digest(tokenizer),
        "options": dataclasses.asdict(EncodingOptions.from_args(data_args)),
        "code": code_digest(),
    }
    return f"{shape}-{hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]}"


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


def fingerprint(value: Any) -> Any:
    """A JSON description of a template that is equal in every process: no memory addresses, unlike repr.

    Dataclasses are described by their type and fields, functions (a tool listing) by their
    qualified name, as code_digest covers their source. Anything else must already be JSON,
    or json.dumps fails loudly instead of keying on something unstable.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {field.name: fingerprint(getattr(value, field.name)) for field in dataclasses.fields(value)}
        return {"class": qualified_name(type(value)), "fields": fields}
    if callable(value):
        return qualified_name(value)
    if isinstance(value, (list, tuple)):
        return [fingerprint(item) for item in value]
    return value


def qualified_name(value: Any) -> str:
    return f"{value.__module__}.{value.__qualname__}"


def code_digest() -> str:
    """Hash of every module of the data package, so a code change never reads an old result.

    The whole package, found on disk rather than listed, so a module added or split off is covered too.
    """
    digest = hashlib.sha256()
    for path in sorted(DATA_PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(DATA_PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
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

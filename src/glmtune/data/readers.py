"""Read dataset files into raw rows, each tagged with where it came from.

Readers are generators so a file bigger than memory can stream through them. Every row
carries its location ("path:line" for JSON Lines, CSV and text, "path[index]" for JSON
arrays and Parquet) so a bad row can be reported where a person can find it. A row that
cannot be parsed is yielded as a `BadRow` for the loader to count, never dropped here.
"""

import csv
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from glmtune.data.schema import RowError
from glmtune.errors import ConfigError

logger = logging.getLogger(__name__)


class BadRow(RowError):
    """A RowError that keeps its reason apart from its location, so skips can be counted by reason."""

    def __init__(self, location: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{location}: {reason}" + (f" ({detail})" if detail else ""))
        self.location = location
        self.reason = reason


RawRow = tuple[str, dict[str, Any] | BadRow]  # (location, row or the reason it could not be read)


def read_rows(path: Path, whole_file: bool = False) -> Iterator[RawRow]:
    """Rows of a file or of every supported file under a folder, in a stable (sorted) order."""
    if path.is_dir():
        for file in data_files(path):
            yield from read_file(file, whole_file)
    elif path.is_file():
        yield from read_file(path, whole_file)
    else:
        raise ConfigError(f"dataset file {path} does not exist")


def data_files(folder: Path) -> list[Path]:
    """Supported files under a folder; hidden files and dataset_info.json are not data."""
    candidates = sorted(
        file
        for file in folder.rglob("*")
        if file.is_file() and not any(part.startswith(".") for part in file.relative_to(folder).parts)
    )
    files = [file for file in candidates if file.suffix.lower() in READERS and file.name != "dataset_info.json"]
    ignored = [file.name for file in sorted(set(candidates) - set(files))]
    if ignored:
        logger.info("%s: ignoring files that are not data: %s", folder, ", ".join(ignored))
    if not files:
        raise ConfigError(f"dataset folder {folder} holds no {'/'.join(READERS)} files")
    return files


def read_file(path: Path, whole_file: bool = False) -> Iterator[RawRow]:
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise ConfigError(f"{path}: unsupported file type {suffix or '(none)'}; use one of {', '.join(READERS)}")
    if suffix == ".txt" and whole_file:
        return read_whole_text(path)
    return READERS[suffix](path)


def read_json(path: Path) -> Iterator[RawRow]:
    """A JSON array of objects; a file of JSON Lines named .json is read as JSON Lines."""
    text = read_text(path)
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        if first_line_is_object(text):
            yield from read_jsonl(path)
            return
        raise ConfigError(f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from error
    if isinstance(loaded, dict):
        loaded = [loaded]
    if not isinstance(loaded, list):
        raise ConfigError(f"{path}: expected a JSON array of objects, got {type(loaded).__name__}")
    for index, item in enumerate(loaded):
        yield object_row(f"{path}[{index}]", item)


def first_line_is_object(text: str) -> bool:
    """JSON Lines in disguise: the first line alone is a complete JSON object."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def read_jsonl(path: Path) -> Iterator[RawRow]:
    """One JSON object per line; blank lines are not rows. A file with no parsable line is an error.

    A JSON array named .jsonl (it starts with "[", which no JSON Lines object row does) is read as JSON.
    """
    if starts_with_bracket(path):
        yield from read_json(path)
        return
    parsed = 0
    first_error = ""
    with open_text(path) as handle:
        for number, line in enumerate(lines_of(handle, path), start=1):
            if not line.strip():
                continue
            location = f"{path}:{number}"
            try:
                item = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as error:
                first_error = first_error or f"line {number}, column {error.colno}: {error.msg}"
                yield location, BadRow(location, "malformed JSON line", f"column {error.colno}: {error.msg}")
                continue
            parsed += 1
            yield object_row(location, item)
    if first_error and not parsed:
        raise ConfigError(f"{path}: not JSON Lines, no line parses as JSON ({first_error})")


def starts_with_bracket(path: Path) -> bool:
    with open_text(path) as handle:
        for line in lines_of(handle, path):
            if line.strip():
                return line.lstrip().startswith("[")
    return False


def read_csv(path: Path) -> Iterator[RawRow]:
    """A header row names the columns; each later record is a row located by the line it starts on."""
    with open_text(path, newline="") as handle:
        reader = csv.DictReader(lines_of(handle, path))
        start = 2
        try:
            for record in reader:
                location = f"{path}:{start}"
                start = reader.line_num + 1
                if None in record:
                    yield location, BadRow(location, "more CSV fields than the header names")
                else:
                    yield location, record
        except csv.Error as error:
            raise ConfigError(f"{path}: invalid CSV at line {reader.line_num}: {error}") from error


def read_parquet(path: Path) -> Iterator[RawRow]:
    """Read in record batches so a large file never sits in memory whole."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowIOError / ArrowInvalid
        raise ConfigError(f"{path}: not a readable Parquet file: {error}") from error
    index = 0
    for batch in parquet.iter_batches():
        for item in batch.to_pylist():
            yield f"{path}[{index}]", item
            index += 1


def read_text(path: Path) -> str:
    with open_text(path) as handle:
        return "".join(lines_of(handle, path))


def read_lines(path: Path) -> Iterator[RawRow]:
    """Plain text: one sample per non-empty line."""
    with open_text(path) as handle:
        for number, line in enumerate(lines_of(handle, path), start=1):
            content = line.rstrip("\r\n")
            if content.strip():
                yield f"{path}:{number}", {"text": content}


def read_whole_text(path: Path) -> Iterator[RawRow]:
    """Plain text as one sample per file, for pre-training on whole documents."""
    yield f"{path}:1", {"text": read_text(path)}


def object_row(location: str, item: Any) -> RawRow:
    if isinstance(item, dict):
        return location, item
    return location, BadRow(location, "not a JSON object", f"got {type(item).__name__}")


def open_text(path: Path, newline: str | None = None) -> TextIO:
    """utf-8-sig so a byte-order mark written by some editors does not break the first row."""
    return path.open(encoding="utf-8-sig", newline=newline)


def lines_of(handle: TextIO, path: Path) -> Iterator[str]:
    """Lines of an open file, turning a decoding failure into a message that names the file."""
    number = 0
    try:
        for number, line in enumerate(handle, start=1):
            yield line
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text near line {number + 1}: {error.reason}") from error


READERS: dict[str, Callable[[Path], Iterator[RawRow]]] = {
    ".json": read_json,
    ".jsonl": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
    ".txt": read_lines,
}

"""Read dataset files into raw rows, each tagged with where it came from.

Readers are generators so a file bigger than memory can stream through them. Every row
carries its location ("path:line" for JSON Lines, CSV and text, "path[index]" for JSON
arrays and Parquet) so a bad row can be reported where a person can find it. A row that
cannot be parsed is yielded as a `BadRow` for the loader to count, never dropped here.
"""

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from glmtune.data.encodings import (
    DecodeCheck,
    codec_name,
    marked_text,
    open_text,
    require_decoded,
)
from glmtune.data.schema import RowError
from glmtune.errors import ConfigError

SHOWN_OTHER_FILES = 3  # files that are not data named before a folder is refused
DOCUMENTATION_SUFFIXES = (".md", ".rst")
DOCUMENTATION_NAMES = ("README", "LICENSE", "LICENCE", "NOTICE", "CITATION")


class BadRow(RowError):
    """A RowError that keeps its reason apart from its location, so skips can be counted by reason."""

    def __init__(self, location: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{location}: {reason}" + (f" ({detail})" if detail else ""))
        self.location = location
        self.reason = reason


RawRow = tuple[str, dict[str, Any] | BadRow]  # (location, row or the reason it could not be read)


def read_rows(path: Path, whole_file: bool = False, encoding: str | None = None) -> Iterator[RawRow]:
    """Rows of a file or of every supported file under a folder, in a stable (sorted) order; text files are
    read in `encoding` (None: UTF-8)."""
    codec_name(encoding)
    if path.is_dir():
        for file in data_files(path):
            yield from read_file(file, whole_file, encoding)
    elif path.is_file():
        yield from read_file(path, whole_file, encoding)
    else:
        raise ConfigError(f"dataset file {path} does not exist")


def data_files(folder: Path) -> list[Path]:
    """The data files under a dataset folder, sorted.

    A dataset folder holds data files and nothing else but documentation (README, LICENSE, *.md, *.rst),
    dataset_info.json and hidden files. Any other file means the path is not a dataset folder (a
    `file_name` of "/etc" or a home folder): it is refused at the first few such files instead of reading
    every .txt and .json found below it.
    """
    files: list[Path] = []
    others: list[str] = []
    for file in folder.rglob("*"):
        relative = file.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not file.is_file() or is_documentation(file):
            continue
        if file.suffix.lower() in READERS:
            files.append(file)
            continue
        others.append(str(relative))
        if len(others) == SHOWN_OTHER_FILES:
            break
    if others:
        raise ConfigError(
            f"{folder} is not a dataset folder: it holds files that are not data ({', '.join(others)}); name the data "
            f"file itself, or keep only {'/'.join(READERS)} files (and README or *.md) in the folder"
        )
    if not files:
        raise ConfigError(f"dataset folder {folder} holds no {'/'.join(READERS)} files")
    return sorted(files)


def is_documentation(file: Path) -> bool:
    """Files a dataset folder may hold besides data: its description and its registry."""
    return (
        file.name == "dataset_info.json"
        or file.suffix.lower() in DOCUMENTATION_SUFFIXES
        or file.stem.upper() in DOCUMENTATION_NAMES
    )


def read_file(path: Path, whole_file: bool = False, encoding: str | None = None) -> Iterator[RawRow]:
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise ConfigError(f"{path}: unsupported file type {suffix or '(none)'}; use one of {', '.join(READERS)}")
    if path.stat().st_size == 0:  # an upload or a copy that failed: say so, not "invalid JSON at line 1"
        raise ConfigError(f"{path}: the file is empty (0 bytes)")
    if suffix == ".txt" and whole_file:
        return read_whole_text(path, encoding)
    return READERS[suffix](path, encoding)


def read_json(path: Path, encoding: str | None = None) -> Iterator[RawRow]:
    """A JSON array of objects; a file of JSON Lines named .json is read as JSON Lines."""
    text = marked_text(path, encoding)
    if not text.strip():
        raise ConfigError(f"{path}: the file holds only blank space, no JSON")
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        if first_line_is_object(text):
            yield from read_jsonl(path, encoding)
            return
        require_decoded(path, encoding, text)
        raise ConfigError(f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from error
    require_decoded(path, encoding, text)
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


def read_jsonl(path: Path, encoding: str | None = None) -> Iterator[RawRow]:
    """One JSON object per line; blank lines are not rows; a line that does not decode is a bad row.
    A file with no parsable line is an error.

    A JSON array named .jsonl (it starts with "[", which no JSON Lines object row does) is read as JSON.
    """
    if starts_with_bracket(path, encoding):
        yield from read_json(path, encoding)
        return
    parsed = 0
    first_error = ""
    decoding = DecodeCheck(path, encoding)
    with open_text(path, encoding) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            location = f"{path}:{number}"
            problem = decoding.problem(number, line)
            if problem is not None:
                yield location, BadRow(location, decoding.reason, problem)
                continue
            try:
                item = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as error:
                first_error = first_error or f"line {number}, column {error.colno}: {error.msg}"
                yield location, BadRow(location, "malformed JSON line", f"column {error.colno}: {error.msg}")
                continue
            parsed += 1
            yield object_row(location, item)
    decoding.finish()
    if first_error and not parsed:
        raise ConfigError(f"{path}: not JSON Lines, no line parses as JSON ({first_error})")


def starts_with_bracket(path: Path, encoding: str | None) -> bool:
    with open_text(path, encoding) as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith("[")
    return False


def read_csv(path: Path, encoding: str | None = None) -> Iterator[RawRow]:
    """A header row names the columns; each later record is a row located by the line it starts on."""
    decoding = DecodeCheck(path, encoding)
    with open_text(path, encoding, newline="") as handle:
        reader = csv.DictReader(handle)
        start = 2
        try:
            header = decoding.problem(1, ",".join(reader.fieldnames or []))
            if header is not None:
                raise ConfigError(f"{path}:1: the header is {decoding.reason} ({header})")
            for record in reader:
                location = f"{path}:{start}"
                problem = decoding.problem(start, "".join(str(value) for value in record.values()))
                start = reader.line_num + 1
                if problem is not None:
                    yield location, BadRow(location, decoding.reason, problem)
                elif None in record:
                    yield location, BadRow(location, "more CSV fields than the header names")
                else:
                    yield location, record
        except csv.Error as error:
            raise ConfigError(f"{path}: invalid CSV at line {reader.line_num}: {error}") from error
    decoding.finish()


def read_parquet(path: Path, encoding: str | None = None) -> Iterator[RawRow]:
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


def read_lines(path: Path, encoding: str | None = None) -> Iterator[RawRow]:
    """Plain text: one sample per non-empty line."""
    decoding = DecodeCheck(path, encoding)
    with open_text(path, encoding) as handle:
        for number, line in enumerate(handle, start=1):
            content = line.rstrip("\r\n")
            if not content.strip():
                continue
            location = f"{path}:{number}"
            problem = decoding.problem(number, content)
            yield location, {"text": content} if problem is None else BadRow(location, decoding.reason, problem)
    decoding.finish()


def read_whole_text(path: Path, encoding: str | None = None) -> Iterator[RawRow]:
    """Plain text as one sample per file, for pre-training on whole documents."""
    yield f"{path}:1", {"text": require_decoded(path, encoding, marked_text(path, encoding))}


def object_row(location: str, item: Any) -> RawRow:
    if isinstance(item, dict):
        return location, item
    return location, BadRow(location, "not a JSON object", f"got {type(item).__name__}")


READERS: dict[str, Callable[[Path, str | None], Iterator[RawRow]]] = {
    ".json": read_json,
    ".jsonl": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
    ".txt": read_lines,
}

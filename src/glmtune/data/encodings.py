"""Text encodings of dataset files: one undecodable line is one bad row, and a file that is clearly in
another encoding than the one given gets a message naming the likely one.

Chinese datasets often come as GBK or GB18030 and Windows tools write UTF-16, so a strict decoder that
stops the whole file at the first odd byte loses good rows and, because it decodes in chunks, names the
wrong line. Files are instead decoded with an error handler that keeps each undecodable byte as a lone
surrogate (U+DC00 + byte), which no strict decoder ever produces; a NUL character, which no text file
holds, counts as undecodable too. The line holding either is known exactly and is skipped and counted
while the lines around it are read.
"""

import codecs
import logging
import re
from pathlib import Path
from typing import TextIO

from glmtune.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_ENCODING = "utf-8"
MARK_ERRORS = "glmtune-mark-undecodable"
SNIFF_BYTES = 1 << 18  # what the detector reads from the start of a file
BYTE_ORDER_MARKS = {
    "utf-16": (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE),
    "utf-32": (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE),
}
UNDECODABLE = re.compile("[\x00\udc00-\udcff]")  # a marked byte, or NUL: no text file holds one (UTF-16 read as UTF-8 does)


def mark_undecodable(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return "".join(chr(0xDC00 + byte) for byte in error.object[error.start : error.end]), error.end


codecs.register_error(MARK_ERRORS, mark_undecodable)


def codec_name(encoding: str | None, where: str = "encoding") -> str:
    """Python's name for an encoding setting ("GBK", "utf8", ...); None means UTF-8."""
    name = encoding or DEFAULT_ENCODING
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ConfigError(f"{where}: unknown encoding {name!r}; use a name such as utf-8, gbk, gb18030 or utf-16") from None


def label(encoding: str | None) -> str:
    """How messages name an encoding: UTF-8, GBK, UTF-16."""
    return codec_name(encoding).upper().replace("_", "-")


def open_text(path: Path, encoding: str | None, newline: str | None = None) -> TextIO:
    """Open for reading with undecodable bytes marked, never raised."""
    return path.open(encoding=python_codec(path, codec_name(encoding)), errors=MARK_ERRORS, newline=newline)


def python_codec(path: Path, name: str) -> str:
    """The codec that reads `path` in encoding `name`: UTF-8 as utf-8-sig, so a byte-order mark written by some
    editors does not break the first row; UTF-16 / UTF-32 without a byte-order mark as little-endian (what Windows
    writes), since Python's decoder raises on a missing mark instead of marking bytes."""
    if name == "utf-8":
        return "utf-8-sig"
    marks = BYTE_ORDER_MARKS.get(name)
    if marks is None:
        return name
    with path.open("rb") as handle:
        start = handle.read(4)
    return name if start.startswith(marks) else f"{name}-le"


def undecodable(text: str) -> str | None:
    """Where `text` (decoded by open_text) held a byte that is not in its encoding, or None."""
    found = UNDECODABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return f"a NUL character at column {found.start() + 1}"
    return f"byte 0x{ord(found.group()) - 0xDC00:02x} at column {found.start() + 1}"


def likely_encoding(path: Path) -> str | None:
    """The encoding a detector reads the start of the file in, or None when it cannot tell."""
    from charset_normalizer import from_bytes

    with path.open("rb") as handle:
        best = from_bytes(handle.read(SNIFF_BYTES)).best()
    return None if best is None else codec_name(best.encoding)


def encoding_advice(path: Path, encoding: str | None) -> str:
    """'; it looks like GB18030 text: ...' when the detector reads the file in another encoding, else ''."""
    likely = likely_encoding(path)
    if likely is None or likely == codec_name(encoding):
        return ""
    name = label(likely)
    setting = name.lower()
    return f"; it looks like {name} text: set \"encoding\": \"{setting}\" in its dataset_info.json entry or encoding={setting}"


def marked_text(path: Path, encoding: str | None) -> str:
    """A whole file as text, undecodable bytes marked."""
    with open_text(path, encoding) as handle:
        return handle.read()


def require_decoded(path: Path, encoding: str | None, text: str) -> str:
    """`text` when every byte of it decoded; else an error naming the exact line (a whole-file read has no rows
    to skip)."""
    found = UNDECODABLE.search(text)
    if found is None:
        return text
    line = text.count("\n", 0, found.start()) + 1
    problem = undecodable(text[found.start() :])
    raise ConfigError(f"{path}:{line}: not {label(encoding)} text ({problem}){encoding_advice(path, encoding)}")


class DecodeCheck:
    """One file's decoding so far: the reason a line did not decode, and the error when no line does."""

    def __init__(self, path: Path, encoding: str | None) -> None:
        self.path, self.encoding = path, encoding
        self.reason = f"not {label(encoding)} text"
        self.decoded = 0
        self.failed = 0
        self.first = ""

    def problem(self, number: int, text: str) -> str | None:
        """Why line `number` did not decode, or None."""
        problem = undecodable(text)
        if problem is None:
            self.decoded += 1
            return None
        self.failed += 1
        self.first = self.first or f"line {number}: {problem}"
        return problem

    def finish(self) -> None:
        """A file none of whose lines decodes is in another encoding: an error, not a file of bad rows. Where most
        lines fail, the rows that decoded are kept, with a warning naming the likely encoding."""
        if not self.failed or self.failed <= self.decoded:
            return
        advice = encoding_advice(self.path, self.encoding)
        if not self.decoded:
            raise ConfigError(f"{self.path}: {self.reason}: no line decodes ({self.first}){advice}")
        logger.warning("%s: %d of %d lines are %s%s", self.path, self.failed, self.failed + self.decoded, self.reason, advice)

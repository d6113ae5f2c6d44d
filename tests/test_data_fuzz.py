"""Property-based fuzzing of the data readers and the loader (hypothesis).

Whatever a dataset file holds (random bytes; text in UTF-8, GBK, GB18030 or UTF-16, with or without a
byte-order mark, encodings mixed line by line; random JSON shapes in .json and .jsonl files and in
dataset_info.json entries: alpaca, sharegpt, pairwise, custom columns), reading it ends either in rows
or in glmtune's own error naming the file, the line or the field: never in a traceback. And every row
read is kept or counted as skipped with its reason.

Each property tries FUZZ_EXAMPLES inputs (default 25, a few seconds each). A longer local run:

    GLMTUNE_FUZZ_EXAMPLES=1000 pytest -q tests/test_data_fuzz.py

Every run prints, per property, how many inputs it tried and how they ended (pytest -s shows it).
"""

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glmtune.data.loader import load_examples
from glmtune.data.readers import READERS, BadRow, read_rows
from glmtune.errors import ConfigError
from glmtune.hparams.data_args import DataArguments

FUZZ_EXAMPLES = int(os.environ.get("GLMTUNE_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

SUFFIXES = sorted(READERS)
ENCODINGS = ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16", "utf-16-le", "utf-16-be"]
SETTINGS = [None, "utf-8", "gbk", "gb18030", "utf-16"]  # the `encoding` a user may give
KEYS = [
    "instruction", "input", "output", "history", "system", "conversations", "messages", "from", "value", "role",
    "content", "chosen", "rejected", "text", "prompt", "query", "response", "tools", "kto_tag", "label", "q", "a",
]  # fmt: skip
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20) | st.sampled_from(
    ["你好，世界", "中文回答", "", " ", "human", "gpt", "user", "assistant", "system", "\u00e9t\u00e9", "\n"]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | TEXT, inner, max_size=5),
    max_leaves=12,
)
ROW = st.dictionaries(st.sampled_from(KEYS), JSON, max_size=6)
TURN = st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt", "system", "user", "x"]), "value": TEXT})
SHAPED_ROW = st.one_of(
    ROW,
    st.fixed_dictionaries({"instruction": TEXT, "output": TEXT}, optional={"input": TEXT, "history": JSON}),
    st.fixed_dictionaries({"conversations": st.lists(TURN, max_size=5)}),
    st.fixed_dictionaries({"instruction": TEXT, "chosen": JSON, "rejected": JSON}),
    st.fixed_dictionaries({"text": JSON}),
)
ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "formatting": st.sampled_from(["alpaca", "sharegpt", "text", "nope"]) | JSON,
        "columns": st.dictionaries(st.sampled_from(["prompt", "query", "response", "history", "messages", "system",
                                                    "chosen", "rejected", "text", "tools", "kto_tag"]),
                                   st.sampled_from(KEYS) | JSON, max_size=4),
        "tags": st.dictionaries(st.sampled_from(["role_tag", "content_tag", "user_tag", "assistant_tag"]),
                                st.sampled_from(KEYS + ["human", "gpt"]) | JSON, max_size=3),
        "ranking": JSON,
        "encoding": st.sampled_from(["gbk", "utf-8", "utf-16", "latin-1", "no-such-codec"]) | JSON,
        "whole_file": JSON,
        "file_sha1": JSON,
        "unknown_key": JSON,
    },
)  # fmt: skip
STAGES = ["sft", "rm", "dpo", "kto", "pt"]

outcomes: Counter = Counter()


@contextmanager
def folder() -> Iterator[Path]:
    """A fresh folder per example: pytest's tmp_path is one per test, shared by all of hypothesis's examples."""
    with tempfile.TemporaryDirectory(prefix="glmtune-fuzz-") as name:
        yield Path(name)


def read_or_clear_error(path: Path, encoding: str | None) -> list[tuple[str, Any]] | None:
    """The rows of `path`, or None after a ConfigError that names the file; anything else fails the test."""
    try:
        rows = list(read_rows(path, encoding=encoding))
    except ConfigError as error:
        assert path.name in str(error), f"an error that does not name the file: {error}"
        outcomes["read: clear error"] += 1
        return None
    for location, row in rows:
        assert location.startswith(str(path)) and isinstance(row, (dict, BadRow))
    outcomes["read: rows"] += 1
    return rows


def load_or_clear_error(dataset_dir: Path, stage: str, **options: Any) -> None:
    """Load dataset "d" for `stage`: every row read is kept or counted as skipped, or the error names the dataset,
    its file or its dataset_info.json entry."""
    try:
        loaded = load_examples(DataArguments(dataset="d", dataset_dir=str(dataset_dir), **options), stage)
    except ConfigError as error:
        message = str(error)
        assert any(name in message for name in ("'d'", "dataset_info.json", str(dataset_dir))), message
        outcomes["load: clear error"] += 1
        return
    report = loaded.report
    assert report.read == report.kept + sum(report.skipped.values()), report.summary()
    assert len(loaded.train) == report.kept
    outcomes["load: rows"] += 1
    outcomes["rows read"] += report.read
    outcomes["rows skipped"] += sum(report.skipped.values())


def register(dataset_dir: Path, entry: dict[str, Any]) -> None:
    (dataset_dir / "dataset_info.json").write_text(json.dumps({"d": entry}), encoding="utf-8")


def json_text(rows: list[Any], suffix: str) -> str:
    """A JSON array for .json, JSON Lines for .jsonl."""
    if suffix == ".json":
        return json.dumps(rows, ensure_ascii=False)
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def encoded_line(line: str, encoding: str) -> bytes:
    return line.encode(encoding, errors="replace") + "\n".encode(encoding.removesuffix("-sig"))


@FUZZ
@given(data=st.binary(max_size=2000), suffix=st.sampled_from(SUFFIXES), encoding=st.sampled_from(SETTINGS))
def test_random_bytes_read_as_rows_or_a_clear_error(data, suffix, encoding):
    with folder() as root:
        path = root / f"random{suffix}"
        path.write_bytes(data)
        read_or_clear_error(path, encoding)


@FUZZ
@given(
    rows=st.lists(SHAPED_ROW, max_size=8),
    encoding=st.sampled_from(ENCODINGS),
    suffix=st.sampled_from([".json", ".jsonl"]),
    other=st.sampled_from(SETTINGS),
)
def test_json_in_any_encoding_reads_every_row_in_that_encoding(rows, encoding, suffix, other):
    """Read in the encoding it was written in, every row comes back; read in another, it reads or fails clearly."""
    with folder() as root:
        path = root / f"rows{suffix}"
        try:
            path.write_bytes(json_text(rows, suffix).encode(encoding))
            exact = True
        except UnicodeEncodeError:  # GBK has no emoji, for one: such characters become "?"
            path.write_bytes(json_text(rows, suffix).encode(encoding, errors="replace"))
            exact = False
        read = read_or_clear_error(path, encoding.removesuffix("-sig"))
        if rows and exact:
            assert read is not None and [row for _, row in read] == rows
        read_or_clear_error(path, other)


@FUZZ
@given(lines=st.lists(TEXT, min_size=1, max_size=12), suffix=st.sampled_from([".jsonl", ".txt", ".csv"]), data=st.data())
def test_lines_in_mixed_encodings_are_rows_or_counted_bad_rows(lines, suffix, data):
    """Each line in its own encoding (the hostile pass's GBK row in a UTF-8 file): no traceback, and a line that does
    not decode is a BadRow at its own line, never the end of the file."""
    as_json = suffix == ".jsonl"
    body = [json.dumps({"text": line}, ensure_ascii=False) if as_json else line.replace("\n", " ") for line in lines]
    header = b"text\n" if suffix == ".csv" else b""
    with folder() as root:
        path = root / f"mixed{suffix}"
        path.write_bytes(header + b"".join(encoded_line(line, data.draw(st.sampled_from(ENCODINGS))) for line in body))
        read_or_clear_error(path, data.draw(st.sampled_from(SETTINGS)))


@FUZZ
@given(
    rows=st.lists(SHAPED_ROW | JSON, max_size=8),
    suffix=st.sampled_from([".json", ".jsonl"]),
    entry=ENTRY,
    stage=st.sampled_from(STAGES),
)
def test_any_json_shape_and_registry_entry_loads_or_fails_clearly(rows, suffix, entry, stage):
    """Random rows under a random dataset_info.json entry, for a random stage: rows read = kept + skipped, or an
    error that names the dataset, its file or its entry."""
    with folder() as root:
        (root / f"rows{suffix}").write_text(json_text(rows, suffix), encoding="utf-8")
        register(root, {"file_name": f"rows{suffix}", **entry})
        load_or_clear_error(root, stage)


WELL_FORMED_ENTRY = st.sampled_from([
    {},
    {"formatting": "alpaca"},
    {"formatting": "alpaca", "columns": {"prompt": "q", "response": "a"}},
    {"formatting": "sharegpt", "columns": {"messages": "conversations"}},
    {"formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}},
    {"formatting": "alpaca", "ranking": True, "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}},
    {"columns": {"prompt": "prompt", "query": "query", "response": "response", "history": "history"}},
])  # fmt: skip


@FUZZ
@given(rows=st.lists(SHAPED_ROW, min_size=1, max_size=10), entry=WELL_FORMED_ENTRY, stage=st.sampled_from(STAGES))
def test_rows_of_any_shape_under_a_valid_entry_are_kept_or_counted(rows, entry, stage):
    with folder() as root:
        (root / "rows.jsonl").write_text(json_text(rows, ".jsonl"), encoding="utf-8")
        register(root, {"file_name": "rows.jsonl", **entry})
        load_or_clear_error(root, stage)


@FUZZ
@given(info=JSON | st.fixed_dictionaries({"d": JSON | ENTRY}), stage=st.sampled_from(STAGES))
def test_a_random_dataset_info_json_fails_clearly(info, stage):
    with folder() as root:
        (root / "rows.json").write_text(json.dumps([{"instruction": "q", "output": "a"}]), encoding="utf-8")
        (root / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
        load_or_clear_error(root, stage)


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    yield
    print(f"\ndata fuzz, {FUZZ_EXAMPLES} examples per property: {dict(sorted(outcomes.items()))}")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_an_empty_file_says_it_is_empty(tmp_path, suffix):
    """Found by the fuzzer: a 0-byte .json said "invalid JSON at line 1, column 1", a 0-byte .jsonl read as no rows."""
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match=rf"empty{suffix}: the file is empty \(0 bytes\)"):
        list(read_rows(path))


@pytest.mark.parametrize("content", [b" \n\t\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n  "])
def test_a_json_file_of_blank_space_says_so(tmp_path, content):
    path = tmp_path / "blank.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="blank.json: the file holds only blank space, no JSON"):
        list(read_rows(path))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".txt", ".json"])
def test_utf16_without_a_byte_order_mark_reads_as_little_endian(tmp_path, suffix):
    """Found by the fuzzer: encoding utf-16 on a file without a byte-order mark raised Python's UnicodeError."""
    text = {".csv": "text\n你好\n", ".jsonl": '{"text": "你好"}\n', ".txt": "你好\n", ".json": '[{"text": "你好"}]'}[suffix]
    path = tmp_path / f"no_bom{suffix}"
    path.write_bytes(text.encode("utf-16-le"))
    assert [row for _, row in read_rows(path, encoding="utf-16")] == [{"text": "你好"}]
    path.write_bytes(b"\x00\x00")
    with pytest.raises(ConfigError, match="no_bom"):
        list(read_rows(path, encoding="utf-16"))


@pytest.mark.parametrize("sha1", [[], 12, {"a": 1}])
def test_a_file_sha1_that_is_not_a_string_names_the_entry(tmp_path, sha1):
    """Found by the fuzzer: `"file_sha1": []` raised AttributeError ('list' object has no attribute 'lower')."""
    (tmp_path / "rows.json").write_text(json.dumps([{"instruction": "q", "output": "a"}]), encoding="utf-8")
    register(tmp_path, {"file_name": "rows.json", "file_sha1": sha1})
    with pytest.raises(ConfigError, match="dataset 'd': file_sha1 must be a string"):
        load_examples(DataArguments(dataset="d", dataset_dir=str(tmp_path)), "sft")

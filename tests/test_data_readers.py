"""File readers: every format yields rows located by file and line or index; bad rows are yielded, not lost."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glmtune.data.readers import BadRow, read_rows
from glmtune.data.schema import RowError
from glmtune.errors import ConfigError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def rows(path: Path, whole_file: bool = False) -> list:
    return list(read_rows(path, whole_file))


def test_json_array_rows_are_located_by_index(tmp_path):
    path = write(tmp_path / "a.json", json.dumps([{"q": "1"}, {"q": "2"}]))
    assert rows(path) == [(f"{path}[0]", {"q": "1"}), (f"{path}[1]", {"q": "2"})]


def test_json_array_element_that_is_not_an_object_is_a_bad_row(tmp_path):
    path = write(tmp_path / "a.json", json.dumps([{"q": "1"}, ["oops"]]))
    location, row = rows(path)[1]
    assert location == f"{path}[1]"
    assert isinstance(row, BadRow) and isinstance(row, RowError)
    assert row.reason == "not a JSON object"
    assert str(row).startswith(f"{path}[1]: not a JSON object")


def test_invalid_json_file_names_file_line_and_column(tmp_path):
    path = write(tmp_path / "broken.json", '[\n  {"q": "1"},\n  {"q": }\n]')
    with pytest.raises(ConfigError, match=r"broken\.json: invalid JSON at line 3, column 9"):
        rows(path)


def test_json_lines_named_json_are_read_as_json_lines(tmp_path):
    path = write(tmp_path / "lines.json", '{"q": "1"}\n{"q": "2"}\n')
    assert rows(path) == [(f"{path}:1", {"q": "1"}), (f"{path}:2", {"q": "2"})]


def test_malformed_jsonl_line_is_yielded_with_its_line_and_reason(tmp_path):
    path = write(tmp_path / "data.jsonl", '{"q": "1"}\n\n{"q": 2,,}\n{"q": "3"}\n')
    result = rows(path)
    assert [location for location, _ in result] == [f"{path}:1", f"{path}:3", f"{path}:4"]
    bad = result[1][1]
    assert isinstance(bad, BadRow)
    assert bad.reason == "malformed JSON line" and bad.location == f"{path}:3"
    assert "column 9" in str(bad)
    assert result[2][1] == {"q": "3"}


def test_json_array_named_jsonl_is_read_as_json(tmp_path):
    path = write(tmp_path / "array.jsonl", '[\n  {"q": "1"}\n]\n')
    assert rows(path) == [(f"{path}[0]", {"q": "1"})]


def test_jsonl_file_with_no_parsable_line_is_an_error(tmp_path):
    path = write(tmp_path / "garbage.jsonl", "q=1\nq=2\n")
    with pytest.raises(ConfigError, match=r"garbage\.jsonl: not JSON Lines, no line parses as JSON \(line 1, column 1"):
        rows(path)


def test_csv_rows_are_located_by_the_line_they_start_on(tmp_path):
    path = write(tmp_path / "d.csv", 'q,a\n1,one\n"multi\nline",two\n3,three,extra\n')
    result = rows(path)
    assert result[0] == (f"{path}:2", {"q": "1", "a": "one"})
    assert result[1] == (f"{path}:3", {"q": "multi\nline", "a": "two"})
    location, bad = result[2]
    assert location == f"{path}:5"
    assert isinstance(bad, BadRow) and bad.reason == "more CSV fields than the header names"


def test_parquet_rows_are_located_by_index(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"instruction": ["a", "b", "c"], "output": ["x", "y", "z"]}), path, row_group_size=2)
    result = rows(path)
    assert [location for location, _ in result] == [f"{path}[0]", f"{path}[1]", f"{path}[2]"]
    assert result[2][1] == {"instruction": "c", "output": "z"}


def test_text_file_is_one_sample_per_non_empty_line_or_one_per_file(tmp_path):
    path = write(tmp_path / "corpus.txt", "first line\n\n  \nsecond line\r\n")
    assert rows(path) == [(f"{path}:1", {"text": "first line"}), (f"{path}:4", {"text": "second line"})]
    assert rows(path, whole_file=True) == [(f"{path}:1", {"text": "first line\n\n  \nsecond line\n"})]


def test_byte_order_mark_does_not_break_the_first_row(tmp_path):
    path = write(tmp_path / "bom.jsonl", '{"q": "1"}\n', encoding="utf-8-sig")
    assert rows(path) == [(f"{path}:1", {"q": "1"})]


def test_text_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"q": "café"}\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.jsonl: not UTF-8"):
        rows(path)


def test_folder_reads_every_data_file_in_sorted_order_and_skips_the_rest(tmp_path):
    write(tmp_path / "b.jsonl", '{"n": "b"}\n')
    write(tmp_path / "a.json", '[{"n": "a"}]')
    write(tmp_path / "sub" / "c.csv", "n\nc\n")
    write(tmp_path / "README.md", "not data")
    write(tmp_path / ".hidden" / "x.jsonl", '{"n": "hidden"}\n')
    write(tmp_path / "dataset_info.json", "{}")
    assert [row["n"] for _, row in rows(tmp_path)] == ["a", "b", "c"]


def test_folder_without_data_files_is_an_error(tmp_path):
    write(tmp_path / "notes.md", "nothing here")
    with pytest.raises(ConfigError, match="holds no"):
        rows(tmp_path)


def test_unsupported_or_missing_files_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="unsupported file type .xml"):
        rows(write(tmp_path / "d.xml", "<a/>"))
    with pytest.raises(ConfigError, match="does not exist"):
        rows(tmp_path / "missing.jsonl")


def test_a_folder_holding_files_that_are_not_data_is_not_a_dataset_folder(tmp_path):
    """The hostile pass: a `file_name` of /etc read 796 rows from /etc/X11/rgb.txt."""
    write(tmp_path / "X11" / "rgb.txt", "255 250 250 snow\n")
    write(tmp_path / "passwd", "root:x:0:0::/root:/bin/bash\n")
    write(tmp_path / "hosts.conf", "multi on\n")
    with pytest.raises(ConfigError, match=r"is not a dataset folder: it holds files that are not data \(.*passwd"):
        rows(tmp_path)


def test_a_dataset_info_entry_naming_a_system_folder_is_refused_not_walked(tmp_path):
    from glmtune.data.loader import load_examples
    from glmtune.hparams.data_args import DataArguments

    write(tmp_path / "dataset_info.json", json.dumps({"etc": {"file_name": "/etc", "formatting": "alpaca"}}))
    with pytest.raises(ConfigError, match="/etc is not a dataset folder"):
        load_examples(DataArguments(dataset="etc", dataset_dir=str(tmp_path)), "sft")

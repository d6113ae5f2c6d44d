"""Dataset files in other encodings than UTF-8: a bad line is one skipped, counted row at its exact line;
GBK / GB18030 / UTF-16 files read through an `encoding` entry or setting; a wrong encoding names the likely one."""

import json

import pytest

from glmtune.data.loader import load_examples
from glmtune.data.readers import BadRow, read_rows
from glmtune.errors import ConfigError
from glmtune.hparams.data_args import DataArguments

CHINESE_ROWS = [
    {"instruction": f"请用一句话介绍中国的第{index}个省份，并说明它的省会。", "output": f"这是第{index}个回答：省会城市很有名。"}
    for index in range(20)
]


def jsonl_bytes(rows: list[dict], encoding: str = "utf-8") -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode(encoding)


def load(stage: str = "sft", **settings):
    return load_examples(DataArguments(**settings), stage)


def test_one_gbk_line_in_a_large_utf8_file_is_skipped_and_counted_at_its_exact_line(tmp_path):
    """The hostile pass: one GBK row at line 500 of 1,000 stopped the file, naming line 443."""
    rows = [{"instruction": f"question {index}", "output": f"answer {index}"} for index in range(1000)]
    path = tmp_path / "mixed.jsonl"
    lines = jsonl_bytes(rows).splitlines(keepends=True)
    lines[499] = jsonl_bytes([{"instruction": "第五百行", "output": "国标编码"}], "gbk")
    path.write_bytes(b"".join(lines))
    read = list(read_rows(path))
    bad = [(location, row) for location, row in read if isinstance(row, BadRow)]
    assert len(read) == 1000 and [location for location, _ in bad] == [f"{path}:500"]
    assert bad[0][1].reason == "not UTF-8 text" and "byte 0xb5 at column 18" in str(bad[0][1])
    loaded = load(dataset=str(path))
    assert (loaded.report.read, loaded.report.kept, len(loaded.train)) == (1000, 999, 999)
    assert loaded.report.skipped == {"not UTF-8 text": 1}
    assert loaded.report.examples["not UTF-8 text"] == [f"{path}:500"]


@pytest.mark.parametrize("suffix", [".jsonl", ".txt", ".csv"])
def test_a_bad_line_in_a_short_file_is_named_by_its_own_line(tmp_path, suffix):
    good = "plain line".encode()
    bad = "中文".encode("gbk")
    header = b"text\n" if suffix == ".csv" else b""
    body = [b'{"text": "a"}', b'{"text": "' + bad + b'"}', b'{"text": "c"}'] if suffix == ".jsonl" else [good, bad, good]
    path = tmp_path / f"short{suffix}"
    path.write_bytes(header + b"\n".join(body) + b"\n")
    read = list(read_rows(path))
    line = 3 if suffix == ".csv" else 2
    assert [location for location, row in read if isinstance(row, BadRow)] == [f"{path}:{line}"]
    assert sum(not isinstance(row, BadRow) for _, row in read) == 2


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-16"])
@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".txt"])
def test_an_encoding_entry_reads_chinese_files_in_that_encoding(tmp_path, encoding, suffix):
    rows = CHINESE_ROWS[:3]
    if suffix == ".json":
        data = json.dumps(rows, ensure_ascii=False, indent=1).encode(encoding)
    elif suffix == ".jsonl":
        data = jsonl_bytes(rows, encoding)
    elif suffix == ".csv":
        data = ("instruction,output\n" + "".join(f"{row['instruction']},{row['output']}\n" for row in rows)).encode(encoding)
    else:
        data = "".join(row["instruction"] + "\n" for row in rows).encode(encoding)
    (tmp_path / f"zh{suffix}").write_bytes(data)
    entry = {"file_name": f"zh{suffix}", "encoding": encoding.upper()}
    if suffix == ".txt":
        entry["columns"] = {"prompt": "text"}
    (tmp_path / "dataset_info.json").write_text(json.dumps({"zh": entry}), encoding="utf-8")
    loaded = load("pt" if suffix == ".txt" else "sft", dataset="zh", dataset_dir=str(tmp_path))
    assert (loaded.report.read, loaded.report.kept) == (3, 3)
    first = loaded.train[0]
    assert (first["text"] if suffix == ".txt" else first["messages"][0]["content"]) == rows[0]["instruction"]


def test_the_encoding_setting_applies_to_datasets_without_an_entry_of_their_own(tmp_path):
    gbk = tmp_path / "gbk.jsonl"
    gbk.write_bytes(jsonl_bytes(CHINESE_ROWS, "gbk"))
    utf8 = tmp_path / "utf8.jsonl"
    utf8.write_bytes(jsonl_bytes(CHINESE_ROWS[:2]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"own": {"file_name": "utf8.jsonl", "encoding": "utf-8"}}))
    loaded = load(dataset=f"{gbk},own", dataset_dir=str(tmp_path), encoding="gbk")
    assert loaded.report.kept == 22 and loaded.train[0]["messages"][0]["content"] == CHINESE_ROWS[0]["instruction"]


@pytest.mark.parametrize(("written", "likely"), [("gbk", "GB18030"), ("utf-16", "UTF-16")])
def test_a_file_clearly_in_another_encoding_names_the_likely_one(tmp_path, written, likely):
    path = tmp_path / "zh.jsonl"
    path.write_bytes(jsonl_bytes(CHINESE_ROWS, written))
    with pytest.raises(ConfigError, match=rf"zh\.jsonl: .*it looks like {likely} text: set \"encoding\""):
        load(dataset=str(path))


def test_a_utf8_file_declared_gbk_names_utf8(tmp_path):
    path = tmp_path / "zh.json"
    path.write_bytes(json.dumps(CHINESE_ROWS, ensure_ascii=False, indent=1).encode())
    with pytest.raises(ConfigError, match=r"zh\.json:\d+: not GBK text .*it looks like UTF-8 text"):
        list(read_rows(path, encoding="gbk"))


def test_an_unknown_encoding_is_named_before_any_file_is_read(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(jsonl_bytes(CHINESE_ROWS))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"a": {"file_name": "a.jsonl", "encoding": "klingon"}}))
    with pytest.raises(ConfigError, match=r"dataset 'a': encoding: unknown encoding 'klingon'"):
        load(dataset="a", dataset_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        load(dataset=str(tmp_path / "a.jsonl"), encoding="klingon")

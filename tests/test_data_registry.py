"""dataset_info.json in both dialects, plain paths, generators, sha1 checks and helpful unknown-name errors."""

import hashlib
import json
from pathlib import Path

import pytest

from glmtune.data import registry as registry_module
from glmtune.data.converters import RowFormat
from glmtune.data.registry import DatasetSpec, load_registry, resolve, verify_sha1
from glmtune.errors import ConfigError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared dataset folders not found at {SHARED}")


def write_info(folder: Path, entries: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_info.json").write_text(json.dumps(entries), encoding="utf-8")
    return folder


@needs_shared
def test_chatglm_efficient_tuning_entries_keep_file_sha1_and_columns():
    registry = load_registry(SHARED / "chatglm_efficient_tuning")
    spec = resolve("oaast_rm_zh", registry)
    assert spec.path == SHARED / "chatglm_efficient_tuning" / "oaast_rm_zh.json"
    assert spec.sha1 == "1065af1f3784dd61be5e79713a35f427b713a232"
    assert spec.row_format == RowFormat(
        "alpaca", {"prompt": "instruction", "query": "input", "response": "output", "history": "history"}
    )
    verify_sha1(spec)


@needs_shared
def test_llama_factory_entries_keep_formatting_columns_and_ranking():
    spec = resolve("dpo_en_demo", load_registry(SHARED / "llama_factory"))
    assert spec.row_format == RowFormat(
        "sharegpt", {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}, ranking=True
    )
    assert spec.sha1 is None


def test_sha1_mismatch_names_the_file(tmp_path):
    data = tmp_path / "d.json"
    data.write_text('[{"instruction": "a", "output": "b"}]', encoding="utf-8")
    write_info(tmp_path, {"d": {"file_name": "d.json", "file_sha1": "0" * 40}})
    spec = resolve("d", load_registry(tmp_path))
    with pytest.raises(
        ConfigError, match=rf"{data}.*has SHA-1 {hashlib.sha1(data.read_bytes()).hexdigest()}.*expects 0000"
    ):
        verify_sha1(spec)


def test_unknown_name_lists_close_matches_and_the_registry_file(tmp_path):
    write_info(tmp_path, {"alpaca_en_demo": {"file_name": "a.json"}, "identity": {"file_name": "i.json"}})
    with pytest.raises(ConfigError) as caught:
        resolve("alpaca_en_dem", load_registry(tmp_path))
    message = str(caught.value)
    assert "did you mean alpaca_en_demo?" in message
    assert str(tmp_path / "dataset_info.json") in message


def test_plain_paths_resolve_relative_to_dataset_dir_then_working_directory(tmp_path, monkeypatch):
    write_info(tmp_path / "dir", {})
    (tmp_path / "dir" / "inside.jsonl").write_text("{}\n", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    monkeypatch.chdir(tmp_path)
    registry = load_registry(tmp_path / "dir")
    assert resolve("inside.jsonl", registry) == DatasetSpec(name="inside.jsonl", path=tmp_path / "dir" / "inside.jsonl")
    assert resolve("folder", registry) == DatasetSpec(name="folder", path=Path("folder"))


def test_without_dataset_dir_the_bundled_registry_is_used_and_may_be_absent(tmp_path, monkeypatch):
    assert load_registry(None).folder == registry_module.bundled_dir()
    monkeypatch.setattr(registry_module, "bundled_dir", lambda: tmp_path / "missing")
    registry = load_registry(None)
    assert registry.entries == {}
    with pytest.raises(ConfigError, match="dataset_info.json does not exist"):
        resolve("identity", registry)


def test_generator_entries_merge_their_arguments_with_the_override(tmp_path):
    write_info(tmp_path, {"gen": {"generator": "fake", "generator_args": {"size": 3, "seed": 1}}})
    registry = load_registry(tmp_path)
    assert resolve("gen", registry).generator_args == {"size": 3, "seed": 1}
    spec = resolve("gen", registry, "{seed: 9}")
    assert (spec.generator, spec.generator_args, spec.path) == ("fake", {"size": 3, "seed": 9}, None)
    with pytest.raises(ConfigError, match="generator_args must be a mapping"):
        resolve("gen", registry, "[1, 2]")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"file_name": "x.json", "formatting": "openai"}, "formatting 'openai' is not one of alpaca, sharegpt"),
        ({"file_name": "x.json", "columns": {"promt": "q"}}, "unknown key 'promt' \\(did you mean prompt\\?\\)"),
        ({"file_name": "x.json", "tags": {"role": "from"}}, "unknown key 'role'"),
        ({"file_name": "x.json", "columns": {"images": "images"}}, "text only"),
        ({"hf_hub_url": "someone/data"}, "local files only"),
        ({"formatting": "alpaca"}, "needs file_name"),
        ("x.json", "expected an object"),
    ],
)
def test_invalid_entries_say_what_to_change(tmp_path, entry, message):
    write_info(tmp_path, {"d": entry, "other": {"hf_hub_url": "only checked when asked for"}})
    with pytest.raises(ConfigError, match=message):
        resolve("d", load_registry(tmp_path))


def test_invalid_dataset_info_names_line_and_column(tmp_path):
    (tmp_path / "dataset_info.json").write_text('{\n  "a": {"file_name": }\n}', encoding="utf-8")
    with pytest.raises(ConfigError, match="dataset_info.json: invalid JSON at line 2, column 22"):
        load_registry(tmp_path)


def test_dataset_dir_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder"):
        load_registry(tmp_path / "nope")
